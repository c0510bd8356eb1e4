/**
 * vnet under test: its namespace, a vnetd there (plain, or socket-activated), the CLI run in the
 * namespace, the socket API, and tap hand-offs timed by build/handoff.
 */
import { spawn } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { alive, made, run, sleep, start, until } from './proc.mjs';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const HANDOFF = path.join(ROOT, 'build/handoff');
export const VNET_HELPER = path.join(ROOT, 'build/vnet-bridge-helper');
export const FLOOR_HELPER = path.join(ROOT, 'build/tap-floor');
export const STOCK_HELPER = '/usr/lib/qemu/qemu-bridge-helper';
export const VNET_CLI = path.join(ROOT, 'bin/vnet');
export const BRIDGE = 'virbr0';
export const NETWORK = 'default';

export class Bench {
  constructor(opts) {
    this.opts = opts;
    this.dir = made.dir = mkdtempSync(path.join(os.tmpdir(), 'vnet-bench-'));
    chmodSync(this.dir, 0o755);
    this.ns = `vnbench-${process.pid}`;
    // NODE_EXTRA_CA_CERTS (set on some build machines) makes every node process parse a CA bundle
    // at start (~40 ms of CPU and 2 MB here); vnetd's unit and a user's shell have none, and
    // libvirt pays nothing like it, so neither vnet nor the bare `node -e 0` gets it
    const { NODE_EXTRA_CA_CERTS: _certs, ...inherited } = process.env;
    this.env = {
      ...inherited,
      VNET_CONFIG_DIR: path.join(this.dir, 'etc-vnet'),
      VNET_STATE_DIR: path.join(this.dir, 'var-lib-vnet'),
      VNET_RUNTIME_DIR: path.join(this.dir, 'run-vnet'),
      VNET_QEMU_CONF_DIR: path.join(this.dir, 'etc-qemu'),
      // never this machine's system bus (a real firewalld there would get vnet's bindings)
      DBUS_SYSTEM_BUS_ADDRESS: `unix:path=${path.join(this.dir, 'no-system-bus')}`,
    };
    this.networksDir = path.join(this.env.VNET_CONFIG_DIR, 'networks');
    for (const d of [this.networksDir, this.env.VNET_QEMU_CONF_DIR, this.env.VNET_RUNTIME_DIR, path.join(this.dir, 'upper'), path.join(this.dir, 'work')]) mkdirSync(d, { recursive: true });
    this.socket = path.join(this.env.VNET_RUNTIME_DIR, 'vnetd.sock');
    this.logFile = path.join(this.dir, 'vnetd.log');
  }

  async setup() {
    await run('ip', ['netns', 'add', this.ns]);
    made.ns = this.ns;
    await this.inNs('ip', ['link', 'set', 'lo', 'up']);
    this.client = await import(path.join(ROOT, 'dist/api/client.js'));
  }

  inNs(cmd, args, opts = {}) {
    return run('ip', ['netns', 'exec', this.ns, cmd, ...args], { env: this.env, ...opts });
  }

  /** One call on vnetd's socket (as root). */
  call(method, params = {}, timeoutMs = 60_000) {
    return this.client.call(this.socket, method, params, timeoutMs);
  }

  /** vnetd in the namespace, its JSON log to a file (a pipe we do not drain fast enough would slow it). */
  async startVnetd(extraEnv = {}, nodeArgs = []) {
    const log = openSync(this.logFile, 'a');
    const child = spawn('ip', ['netns', 'exec', this.ns, process.execPath, ...nodeArgs, this.opts.vnetd], { env: { ...this.env, ...extraEnv }, stdio: ['ignore', log, log] });
    closeSync(log);
    // `ip netns exec` execs the command, so this pid is vnetd's
    this.vnetdPid = made.vnetd = child.pid;
    made.pids.add(child.pid);
    child.on('exit', () => made.pids.delete(child.pid));
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (!alive(child.pid)) throw new Error(`vnetd exited at start:\n${readFileSync(this.logFile, 'utf8').slice(-4000)}`);
      if (existsSync(this.socket)) {
        try {
          await this.call('ping', {}, 2000);
          return;
        } catch {
          /* not yet */
        }
      }
      if (Date.now() > deadline) throw new Error(`vnetd did not answer within 15 s:\n${readFileSync(this.logFile, 'utf8').slice(-4000)}`);
      await sleep(50);
    }
  }

  /** SIGTERM vnetd and wait for it to go (its dnsmasq stop with it; bridges and rules stay). */
  async stopVnetd() {
    const pid = this.vnetdPid;
    if (!pid || !alive(pid)) return;
    process.kill(pid, 'SIGTERM');
    await until('vnetd to exit', () => !alive(pid), 15_000);
    this.vnetdPid = made.vnetd = undefined;
  }

  /**
   * vnetd started by systemd-socket-activate on the first connection (as vnetd.socket does), its
   * log in logFile; returns the activator's pid, which becomes vnetd's. Resolves once it listens.
   */
  async activate(extraEnv = {}) {
    rmSync(this.socket, { force: true });
    const setenv = Object.entries({ ...pick(this.env), VNET_LOG_FILE: this.logFile, ...extraEnv }).flatMap(([k, v]) => ['-E', `${k}=${v}`]);
    const child = start('ip', ['netns', 'exec', this.ns, 'systemd-socket-activate', '-l', this.socket, ...setenv, process.execPath, this.opts.vnetd]);
    this.vnetdPid = made.vnetd = child.pid;
    this.activator = child;
    await until('the activation socket', () => listening(child.pid, this.socket), 10_000, 5);
    return child;
  }

  /**
   * `vnet ARGS` as a user would run it, inside the namespace: run as root outside it, a
   * `vnet up` that found no vnetd answering (ours died) would start one in the root namespace.
   * The wall time includes `ip netns exec` (a few ms; see bench/README.md).
   */
  cli(args, opts = {}) {
    return this.inNs(process.execPath, [VNET_CLI, ...args], opts);
  }

  /** Parsed log lines with this msg so far. */
  logged(msg) {
    const out = [];
    if (!existsSync(this.logFile)) return out;
    for (const line of readFileSync(this.logFile, 'utf8').split('\n')) {
      if (!line.includes(`"msg":"${msg}"`)) continue;
      try {
        out.push(JSON.parse(line));
      } catch {
        /* not JSON */
      }
    }
    return out;
  }

  /** Daemon-side times (ms) of every log line with this msg so far. */
  loggedMs(msg) {
    return this.logged(msg).flatMap((j) => (typeof j.ms === 'number' ? [j.ms] : []));
  }

  /** n hand-offs through `helper` (build/handoff), parsed; `uid` runs them as that user. */
  async handoff(helper, n, { bridge = BRIDGE, flags = ['--samples'], uid, check = true } = {}) {
    const argv = [HANDOFF, helper, bridge, String(n), ...flags];
    const r = uid === undefined ? await this.inNs(argv[0], argv.slice(1), { check }) : await this.inNs('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', ...argv], { check });
    const j = JSON.parse(r.stdout);
    j.wall_ms = r.ms;
    j.stderr = r.stderr;
    return j;
  }

  async handoffVnet(n) {
    return (await this.handoff(VNET_HELPER, n)).samples_ms;
  }

  /** d: n hand-offs in a row, each tap closed at once; its summary, wall time and first error. */
  async handoffLoop(n) {
    const s = await this.handoff(VNET_HELPER, n, { flags: ['--close-each'], check: false });
    const out = { n: s.n, ok: s.ok, failed: s.failed, seconds: +(s.wall_ms / 1000).toFixed(2), p50_ms: s.p50_ms, p90_ms: s.p90_ms, max_ms: s.max_ms };
    const firstError = s.stderr.split('\n').find((l) => l.trim());
    if (firstError) out.first_error = firstError;
    return out;
  }

  /** The stock helper, as root, its bridge.conf `allow BRIDGE` on an overlay over /etc in a private mount namespace. */
  async handoffStock(n, flags = ['--samples']) {
    const r = await this.inNs('unshare', ['-m', '--propagation', 'private', 'sh', '-c', this.stockScript(n, flags)]);
    return JSON.parse(r.stdout).samples_ms;
  }

  stockScript(n, flags) {
    return [
      `mount -t overlay overlay -o lowerdir=/etc,upperdir=${this.dir}/upper,workdir=${this.dir}/work /etc`,
      `mkdir -p /etc/qemu`,
      `echo 'allow ${BRIDGE}' > /etc/qemu/bridge.conf`,
      `exec ${HANDOFF} ${STOCK_HELPER} ${BRIDGE} ${n} ${flags.join(' ')}`,
    ].join(' && ');
  }

  /** The floor: build/tap-floor makes the tap itself, as root. */
  async handoffFloor(n) {
    return (await this.handoff(FLOOR_HELPER, n)).samples_ms;
  }

  /** Live taps in the namespace. */
  async taps() {
    return JSON.parse((await this.inNs('ip', ['-j', 'link', 'show', 'type', 'tun'])).stdout || '[]').length;
  }
}

/** The VNET_* variables and PATH of env. */
function pick(env) {
  return Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith('VNET_') || k === 'PATH'));
}

/** Does process pid's network namespace hold a listening unix socket at this path? */
export function listening(pid, socketPath) {
  try {
    return readFileSync(`/proc/${pid}/net/unix`, 'utf8')
      .split('\n')
      .some((l) => l.endsWith(` ${socketPath}`) && l.split(/\s+/)[3] === '00010000'); // __SO_ACCEPTCON: listening
  } catch {
    return false;
  }
}
