/**
 * Runs one dnsmasq for one network and keeps it running.
 *
 * start(): check that the account the config names (user=, group=) exists (else fail,
 * naming it and the command that creates it, having written nothing), write the config
 * atomically, `dnsmasq --test` it, spawn dnsmasq in the
 * foreground logging to stderr, and resolve once it logs "started" (it logs that only
 * after binding its DNS and DHCP sockets and dropping to its user). An unexpected exit is
 * restarted with exponential backoff; after `maxFailures` quick failures in a row the
 * supervisor emits 'failed' and stops trying. stop(): SIGTERM, then SIGKILL after a
 * timeout. Processes are only ever signalled through their ChildProcess handle.
 *
 * dnsmasq's output is copied into vnetd's log line by line, each cut to MAX_LINE_BYTES and
 * rate-limited per network (a burst, then one a second, with a count of what was held back).
 *
 * Events: 'started' (pid), 'restarted' (pid), 'exit' ({ pid, code, signal }),
 * 'failed' (reason: string).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { lstat, mkdir, rename } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { pino, type Logger } from 'pino';
import { writeFileAtomic } from '../sys/atomic-file.js';
import { requireAccount } from './account.js';
import { dnsmasqArgs, dnsmasqTestArgs } from './dnsmasq.js';
import { cut } from '../log/cut.js';
import { Backoff, type BackoffOptions } from '../sys/backoff.js';
import { TokenBucket, type TokenBucketOptions } from '../log/token-bucket.js';

type RestartOptions = Required<BackoffOptions>;

export interface SupervisorOptions {
  /** network name, for messages and logs */
  name: string;
  /** where the config is written (absolute) */
  confPath: string;
  /** the config text (from dnsmasqConfig) */
  config: string;
  /** dnsmasq executable, looked up in PATH when bare */
  binary?: string;
  logger?: Logger;
  backoff?: Partial<BackoffOptions>;
  /** the config's dhcp-leasefile: its folder is created and a non-regular file there set aside */
  leaseFile?: string;
  /** longest wait for "started" */
  startTimeoutMs?: number;
  /** wait after SIGTERM before SIGKILL */
  stopTimeoutMs?: number;
  /** the rate limit of dnsmasq's lines in the log (default: a burst of 20, then one a second) */
  lineLimit?: Partial<TokenBucketOptions>;
}

export class DnsmasqError extends Error {
  override name = 'DnsmasqError';
  constructor(
    readonly network: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export type SupervisorState = 'idle' | 'starting' | 'running' | 'backoff' | 'stopping' | 'stopped' | 'failed';

const DEFAULT_BACKOFF: RestartOptions = { initialMs: 200, maxMs: 5000, maxFailures: 5, stableMs: 5000 };
const STARTED = /\bstarted, version /;
const TAIL_LINES = 12;
const DEFAULT_LINE_LIMIT: TokenBucketOptions = { burst: 20, refillMs: 1000 };
/** lines held back are counted in the log at the latest this long after the first of them */
const HELD_REPORT_MS = 5000;
/** dnsmasq gets a clean environment: nothing of vnetd's (NOTIFY_SOCKET, LISTEN_FDS, ...) */
const DNSMASQ_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };

export class DnsmasqSupervisor extends EventEmitter {
  readonly name: string;
  readonly confPath: string;
  private readonly config: string;
  private readonly binary: string;
  private readonly log: Logger;
  private readonly backoff: Backoff;
  private readonly leaseFile: string | undefined;
  private readonly startTimeoutMs: number;
  private readonly stopTimeoutMs: number;

  private state: SupervisorState = 'idle';
  private child: ChildProcess | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private tail: string[] = [];
  /** one bucket per network, across restarts of its dnsmasq */
  private readonly lines: TokenBucket;
  private heldTimer: NodeJS.Timeout | undefined;
  /** spawn-to-serving time of the current dnsmasq, in ms */
  lastStartupMs: number | undefined;

  constructor(opts: SupervisorOptions) {
    super();
    this.name = opts.name;
    this.confPath = opts.confPath;
    this.config = opts.config;
    this.binary = opts.binary ?? 'dnsmasq';
    this.log = (opts.logger ?? pino({ level: 'silent' })).child({ network: opts.name, component: 'dnsmasq' });
    this.backoff = new Backoff({ ...DEFAULT_BACKOFF, ...opts.backoff });
    this.leaseFile = opts.leaseFile;
    this.startTimeoutMs = opts.startTimeoutMs ?? 10_000;
    this.stopTimeoutMs = opts.stopTimeoutMs ?? 3_000;
    this.lines = new TokenBucket({ ...DEFAULT_LINE_LIMIT, ...opts.lineLimit });
  }

  /** pid of the running dnsmasq, if any */
  get pid(): number | undefined {
    return this.state === 'running' || this.state === 'starting' ? this.child?.pid : undefined;
  }

  get status(): SupervisorState {
    return this.state;
  }

  async start(): Promise<void> {
    if (this.state !== 'idle' && this.state !== 'stopped' && this.state !== 'failed') {
      throw new DnsmasqError(this.name, `dnsmasq for network ${this.name} is already ${this.state}`);
    }
    this.state = 'starting';
    this.backoff.reset();
    try {
      // before anything is written: a missing account fails here, naming it, not in dnsmasq
      const user = /^user=(.*)$/m.exec(this.config)?.[1];
      if (user !== undefined) await requireAccount(user, /^group=(.*)$/m.exec(this.config)?.[1] ?? user);
      await mkdir(path.dirname(this.confPath), { recursive: true, mode: 0o755 });
      await writeFileAtomic(this.confPath, this.config, { mode: 0o644 });
      if (this.leaseFile) await this.prepareLeaseFile(this.leaseFile);
      await this.checkConfig();
      if (this.state !== 'starting') throw new DnsmasqError(this.name, `dnsmasq for network ${this.name}: stopped while starting`);
      await this.spawnOnce();
    } catch (err) {
      this.state = 'stopped';
      if (err instanceof DnsmasqError && err.network === this.name) throw err;
      throw new DnsmasqError(this.name, `dnsmasq for network ${this.name}: ${(err as Error).message}`, { cause: err });
    }
    this.state = 'running';
    this.emit('started', this.child?.pid);
  }

  async stop(): Promise<void> {
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    const child = this.child;
    if (this.state === 'stopped' || this.state === 'idle') return;
    this.state = 'stopping';
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = waitExit(child);
      child.kill('SIGTERM');
      const timer = setTimeout(() => {
        this.log.warn({ pid: child.pid }, 'dnsmasq ignored SIGTERM; sending SIGKILL');
        child.kill('SIGKILL');
      }, this.stopTimeoutMs);
      await exited;
      clearTimeout(timer);
    }
    this.child = undefined;
    this.state = 'stopped';
    this.reportHeld();
  }

  /** A symlink, folder or other non-regular file at the lease path is renamed aside, untouched. */
  private async prepareLeaseFile(file: string): Promise<void> {
    await mkdir(path.dirname(file), { recursive: true, mode: 0o755 });
    let st;
    try {
      st = await lstat(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    if (st.isFile()) return;
    const aside = `${file}.bad-${Date.now()}`;
    await rename(file, aside);
    this.log.warn({ file, aside }, 'lease file was not a regular file; set aside');
  }

  private checkConfig(): Promise<void> {
    return new Promise((resolve, reject) => {
      execFile(this.binary, dnsmasqTestArgs(this.confPath), { timeout: 10_000, env: DNSMASQ_ENV }, (err, stdout, stderr) => {
        if (!err) return resolve();
        const detail = `${stderr}${stdout}`.trim().replace(/\s*\n\s*/g, '; ') || err.message;
        reject(
          new DnsmasqError(this.name, `dnsmasq rejected the config of network ${this.name} (${this.confPath}): ${detail}`, {
            cause: err,
          }),
        );
      });
    });
  }

  /** Spawn dnsmasq and resolve once it is serving; reject (with nothing left running) if it is not. */
  private spawnOnce(): Promise<void> {
    this.tail = [];
    const t0 = performance.now();
    const child = spawn(this.binary, dnsmasqArgs(this.confPath), { stdio: ['ignore', 'pipe', 'pipe'], env: DNSMASQ_ENV });
    this.child = child;
    return new Promise<void>((resolve, reject) => {
      let serving = false;
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL'); // the exit handler rejects once it is gone
      }, this.startTimeoutMs);
      const onLine = (raw: string) => {
        if (raw.trim() === '') return;
        const line = cut(raw);
        this.tail.push(line);
        if (this.tail.length > TAIL_LINES) this.tail.shift();
        const v = this.lines.take();
        if (v.suppressed) this.logHeld(v.suppressed, child.pid);
        if (v.pass) this.log.info({ pid: child.pid }, line);
        // a flood that stops leaves no next line to carry the count: report it by a timer too
        else this.heldTimer ??= setTimeout(() => this.reportHeld(child.pid), HELD_REPORT_MS).unref();
        if (!serving && STARTED.test(raw)) {
          serving = true;
          clearTimeout(timer);
          this.lastStartupMs = performance.now() - t0;
          resolve();
        }
      };
      createInterface({ input: child.stdout! }).on('line', onLine);
      createInterface({ input: child.stderr! }).on('line', onLine);
      const startedAt = Date.now();
      let gone = false;
      const onGone = (code: number | null, signal: NodeJS.Signals | null, err?: Error) => {
        if (gone) return;
        gone = true;
        clearTimeout(timer);
        this.reportHeld(child.pid);
        const how = err
          ? `could not run ${this.binary}: ${err.message}`
          : timedOut
            ? `did not report "started" within ${this.startTimeoutMs} ms`
            : describeExit(code, signal);
        if (serving) {
          this.onUnexpectedExit(child, how, Date.now() - startedAt, code, signal);
          return;
        }
        // let its last lines arrive (stdio closes), but do not wait on a lingering grandchild
        const finish = () => {
          clearTimeout(settle);
          child.removeListener('close', finish);
          const said = this.tail.length ? `: ${this.tail.join('; ')}` : '';
          reject(new DnsmasqError(this.name, `dnsmasq for network ${this.name} ${how} before serving${said}`, { cause: err }));
        };
        const settle = setTimeout(finish, 250);
        child.once('close', finish);
      };
      child.once('error', (err) => onGone(null, null, err));
      child.once('exit', (code, signal) => onGone(code, signal));
    });
  }

  private onUnexpectedExit(
    child: ChildProcess,
    how: string,
    ranMs: number,
    code: number | null,
    signal: NodeJS.Signals | null,
  ): void {
    this.emit('exit', { pid: child.pid, code, signal });
    if (this.child !== child || this.state !== 'running') return; // stop() or a newer child owns it
    this.log.warn({ pid: child.pid, ranMs }, `dnsmasq ${how}`);
    this.scheduleRestart(`${how}${this.tail.length ? `: ${this.tail.slice(-3).join('; ')}` : ''}`, ranMs);
  }

  /** Log how many lines the rate limit held back, if any (at exit and stop: no later line may come to carry it). */
  private reportHeld(pid?: number): void {
    clearTimeout(this.heldTimer);
    this.heldTimer = undefined;
    const n = this.lines.drain();
    if (n) this.logHeld(n, pid);
  }

  private logHeld(n: number, pid: number | undefined): void {
    this.log.warn({ pid, suppressed: n }, `${n} dnsmasq line(s) not logged: more than the rate limit allows`);
  }

  /** One more failure (after a run of `ranMs`): restart after the backoff's delay, or give up. */
  private scheduleRestart(reason: string, ranMs = 0): void {
    const delay = this.backoff.fail(ranMs);
    if (delay === undefined) {
      this.state = 'failed';
      this.child = undefined;
      const msg = `dnsmasq for network ${this.name} failed ${this.backoff.count} times in a row; not restarting. Last: ${reason}`;
      this.log.error(msg);
      this.emit('failed', msg);
      return;
    }
    this.state = 'backoff';
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.state !== 'backoff') return;
      this.state = 'running';
      this.spawnOnce().then(
        () => {
          if (this.state === 'running') this.emit('restarted', this.child?.pid);
        },
        (err: Error) => {
          if (this.state !== 'running') return;
          this.scheduleRestart(err.message);
        },
      );
    }, delay);
  }
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `killed by ${signal}` : `exited with code ${code}`;
}

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}
