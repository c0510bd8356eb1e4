/**
 * A private, system-like message bus for tests: `dbus-daemon` with
 * test/fixtures/dbus-system-test.conf (Debian's system policy plus the repository's
 * etc/dbus-1/system.d), listening on a socket in a temp dir that unprivileged users
 * can reach. Its pid is tracked, so cleanupAll() kills it if a test forgets.
 */
import { execa, type ResultPromise } from 'execa';
import { chmodSync } from 'node:fs';
import path from 'node:path';
import { tempDir, stopChild, trackPid } from './netns.js';
import { ROOT } from './vnetd.js';

export const DBUS_CONFIG = path.join(ROOT, 'test/fixtures/dbus-system-test.conf');

export class DbusDaemon {
  private constructor(
    private readonly proc: ResultPromise,
    /** the bus address clients use: unix:path=... */
    readonly address: string,
    readonly socketPath: string,
    private readonly output: () => string,
  ) {}

  get pid(): number | undefined {
    return this.proc.pid;
  }

  get log(): string {
    return this.output();
  }

  /** `config`: another bus configuration (a fixture that includes DBUS_CONFIG) */
  static async start(config = DBUS_CONFIG): Promise<DbusDaemon> {
    const dir = tempDir('vnet-dbus-');
    chmodSync(dir, 0o755);
    const socketPath = path.join(dir, 'system_bus_socket');
    const proc = execa(
      'dbus-daemon',
      [`--config-file=${config}`, `--address=unix:path=${socketPath}`, '--print-address', '--nofork', '--nopidfile', '--nosyslog'],
      { reject: false, stdin: 'ignore', buffer: false },
    );
    trackPid(proc.pid);
    let out = '';
    proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    const deadline = Date.now() + 10_000;
    // --print-address writes the address once the socket listens.
    while (!/^unix:path=\S+/m.test(out)) {
      if (proc.exitCode !== null && proc.exitCode !== undefined) throw new Error(`dbus-daemon exited (${proc.exitCode}) before listening:\n${out}`);
      if (Date.now() > deadline) throw new Error(`dbus-daemon did not print its address in 10 s:\n${out}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return new DbusDaemon(proc, `unix:path=${socketPath}`, socketPath, () => out);
  }

  async stop(): Promise<void> {
    await stopChild(this.proc);
  }
}
