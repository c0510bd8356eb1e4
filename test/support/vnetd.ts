/** Run the real vnetd (bin/vnetd from dist/) inside a test namespace, with its folders in a temp dir. */
import { execa, type ResultPromise } from 'execa';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { call } from '../../src/api/client.js';
import { tempDir, trackPid, untrackPid, type Netns } from './netns.js';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const VNETD = path.join(ROOT, 'bin/vnetd');
export const VNET = path.join(ROOT, 'bin/vnet');
export const HELPER = path.join(ROOT, 'build/vnet-bridge-helper');

export interface VnetEnv {
  VNET_CONFIG_DIR: string;
  VNET_STATE_DIR: string;
  VNET_RUNTIME_DIR: string;
  VNET_QEMU_CONF_DIR: string;
  [k: string]: string;
}

export function vnetEnv(extra: Record<string, string> = {}): VnetEnv {
  const base = tempDir('vnet-env-');
  const env: VnetEnv = {
    VNET_CONFIG_DIR: path.join(base, 'etc-vnet'),
    VNET_STATE_DIR: path.join(base, 'var-lib-vnet'),
    VNET_RUNTIME_DIR: path.join(base, 'run-vnet'),
    VNET_QEMU_CONF_DIR: path.join(base, 'etc-qemu'),
    // never this machine's system bus: a vnetd in a test namespace must not bind bridges in the host's firewalld
    DBUS_SYSTEM_BUS_ADDRESS: `unix:path=${path.join(base, 'no-system-bus')}`,
    ...extra,
  };
  mkdirSync(path.join(env.VNET_CONFIG_DIR, 'networks'), { recursive: true });
  mkdirSync(env.VNET_QEMU_CONF_DIR, { recursive: true });
  // the base dir must be traversable by unprivileged test users (nobody)
  chmodSync(base, 0o755);
  return env;
}

export class Vnetd {
  private proc?: ResultPromise;
  log = '';

  constructor(
    readonly ns: Netns,
    readonly env: VnetEnv,
    /** a command that runs `ip netns exec ...` for it, as its arguments (a private mount namespace, say); each execs the next, so the pid stays vnetd's */
    readonly wrap: string[] = [],
  ) {}

  get socket(): string {
    return path.join(this.env.VNET_RUNTIME_DIR, 'vnetd.sock');
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** the daemon process has not exited */
  alive(): boolean {
    return this.proc !== undefined && this.exited === false;
  }

  private exited = false;

  async start(): Promise<this> {
    this.log = '';
    const cmd = [...this.wrap, 'ip', 'netns', 'exec', this.ns.name, process.execPath, VNETD];
    const proc = execa(cmd[0]!, cmd.slice(1), {
      env: { ...process.env, ...this.env },
      extendEnv: false,
      reject: false,
      stdin: 'ignore',
      buffer: false,
    });
    this.proc = proc;
    this.exited = false;
    void proc.then(() => (this.exited = true));
    trackPid(proc.pid);
    proc.stdout?.on('data', (d: Buffer) => (this.log += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (this.log += d.toString()));
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (existsSync(this.socket)) {
        try {
          await call(this.socket, 'ping', {}, 2000);
          return this;
        } catch {
          /* not yet */
        }
      }
      if (proc.exitCode !== null && proc.exitCode !== undefined) throw new Error(`vnetd exited early:\n${this.log}`);
      if (Date.now() > deadline) throw new Error(`vnetd did not come up:\n${this.log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** SIGTERM and wait. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const p = this.proc;
    if (!p?.pid) return;
    if (this.exited) {
      untrackPid(p.pid);
      this.proc = undefined;
      return;
    }
    try {
      process.kill(p.pid, signal);
    } catch {
      /* gone */
    }
    await p;
    untrackPid(p.pid);
    this.proc = undefined;
  }

  /** Run the CLI (optionally as another user) against this daemon. */
  async cli(args: string[], opts: { user?: string } = {}) {
    // Inside the daemon's namespace: `vnet up` starts a vnetd when none answers, and that
    // one must never land in the root namespace.
    const inner = opts.user
      ? ['setpriv', `--reuid=${opts.user}`, `--regid=${opts.user === 'nobody' ? 'nogroup' : opts.user}`, '--clear-groups', process.execPath, VNET, ...args]
      : [process.execPath, VNET, ...args];
    const cmd = ['ip', 'netns', 'exec', this.ns.name, ...inner];
    const r = await execa(cmd[0]!, cmd.slice(1), { env: { ...process.env, ...this.env }, reject: false, stdin: 'ignore' });
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  }

  /** One API call. When vnetd is not answering, the error says whether it died and ends with its log. */
  async call(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    try {
      return await call(this.socket, method, params);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== 'ENOTRUNNING' && code !== 'ETIMEDOUT') throw err;
      const state = this.proc === undefined ? 'not started by this harness' : this.exited ? `exited (${this.proc.exitCode ?? this.proc.signalCode})` : `alive as pid ${this.pid}`;
      (err as Error).message += `\n-- vnetd ${state}; the end of its log:\n${this.log.slice(-4000)}`;
      throw err;
    }
  }

  /** pids of this daemon's children whose command is `comm` */
  children(comm: string): number[] {
    const out: number[] = [];
    for (const pid of readdirSync('/proc').filter((f) => /^\d+$/.test(f)).map(Number)) {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const m = /^\d+ \((.*)\) \S (\d+)/.exec(stat);
        if (m && m[1] === comm && Number(m[2]) === this.pid) out.push(pid);
      } catch {
        /* raced */
      }
    }
    return out;
  }
}

