/**
 * The real firewalld (Debian's package) for tests, never this machine's: it runs in a test
 * network namespace (so its nftables table is that namespace's), on a private system bus
 * (DbusDaemon with dbus-firewalld-test.conf), and in a private mount namespace where a copy
 * of /etc/firewalld is mounted over /etc/firewalld and a tmpfs over /run. Its log goes to a
 * temp file. firewall-cmd talks to it over the same bus.
 */
import { execa, type ResultPromise } from 'execa';
import { cpSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { DbusDaemon } from './dbus-daemon.js';
import { tempDir, trackPid, untrackPid, waitFor, type Netns } from './netns.js';
import { ROOT } from './vnetd.js';

export const DBUS_FIREWALLD_CONFIG = path.join(ROOT, 'test/fixtures/dbus-firewalld-test.conf');
/** vnet's zone and policy files, as `make install` ships them */
export const VNET_FIREWALLD_FILES = path.join(ROOT, 'etc/firewalld');

export class TestFirewalld {
  private proc?: ResultPromise;
  private output = '';
  /** its own copy of /etc/firewalld */
  readonly configDir: string;
  readonly logFile: string;

  private constructor(
    readonly ns: Netns,
    readonly bus: DbusDaemon,
    withVnetFiles: boolean,
  ) {
    const dir = tempDir('vnet-firewalld-');
    this.configDir = path.join(dir, 'etc-firewalld');
    this.logFile = path.join(dir, 'firewalld.log');
    // Debian's configuration as the package installs it: default zone public
    cpSync('/etc/firewalld', this.configDir, { recursive: true });
    if (withVnetFiles) this.installVnetFiles();
  }

  /** A bus and a firewalld on it, in `ns`; `vnetFiles`: with vnet's zones and policies installed. */
  static async start(ns: Netns, opts: { vnetFiles: boolean }): Promise<TestFirewalld> {
    const bus = await DbusDaemon.start(DBUS_FIREWALLD_CONFIG);
    const fw = new TestFirewalld(ns, bus, opts.vnetFiles);
    await fw.startDaemon();
    return fw;
  }

  /** Copy vnet's zone and policy files into the configuration (firewalld reads them at its next reload). */
  installVnetFiles(): void {
    for (const sub of ['zones', 'policies']) cpSync(path.join(VNET_FIREWALLD_FILES, sub), path.join(this.configDir, sub), { recursive: true });
  }

  get env(): Record<string, string> {
    return { DBUS_SYSTEM_BUS_ADDRESS: this.bus.address };
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  get log(): string {
    let file = '';
    try {
      file = readFileSync(this.logFile, 'utf8');
    } catch {
      /* none yet */
    }
    return `${this.output}\n${file}`;
  }

  /** Start firewalld and wait until it says RUNNING. */
  async startDaemon(): Promise<void> {
    const script = [
      'set -e',
      'mount --bind "$1" /etc/firewalld',
      'mount -t tmpfs vnet-test-run /run',
      'shift',
      'exec "$@"',
    ].join('\n');
    const proc = execa(
      'ip',
      ['netns', 'exec', this.ns.name, 'unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', this.configDir, 'firewalld', '--nofork', '--nopid', '--log-file', this.logFile],
      { env: { ...process.env, ...this.env }, reject: false, stdin: 'ignore', buffer: false },
    );
    this.proc = proc;
    trackPid(proc.pid);
    proc.stdout?.on('data', (d: Buffer) => (this.output += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
    await waitFor(`firewalld to run (log:\n${this.log})`, async () => {
      if (proc.exitCode !== null && proc.exitCode !== undefined) throw new Error(`firewalld exited (${proc.exitCode}):\n${this.log}`);
      return (await this.cmd(['--state'])).stdout === 'running';
    }, 30_000);
  }

  /** SIGTERM and wait (firewalld removes its table as it exits). */
  async stopDaemon(): Promise<void> {
    const p = this.proc;
    if (!p?.pid) return;
    try {
      process.kill(p.pid, 'SIGTERM');
    } catch {
      /* gone */
    }
    await p;
    untrackPid(p.pid);
    this.proc = undefined;
  }

  async stop(): Promise<void> {
    await this.stopDaemon();
    await this.bus.stop();
  }

  /** firewall-cmd on this firewalld's bus. */
  async cmd(args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
    const r = await execa('firewall-cmd', args, { env: { ...process.env, ...this.env }, reject: false, stdin: 'ignore' });
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout).trim(), stderr: String(r.stderr).trim() };
  }

  /** The zone an interface is bound to, or "no zone". */
  async zoneOf(ifname: string): Promise<string> {
    const r = await this.cmd([`--get-zone-of-interface=${ifname}`]);
    return r.stdout || r.stderr;
  }

  /** The zone files its configuration holds (names without .xml). */
  zoneFiles(): string[] {
    return readdirSync(path.join(this.configDir, 'zones')).map((f) => f.replace(/\.xml$/, ''));
  }
}
