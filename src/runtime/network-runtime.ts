/**
 * The network runtime: what each network is doing (its state machine), what level the host should
 * hold for it, on-demand bring-up and idle-down. Changes go through the reconciler, one at a time
 * under the daemon's mutex (every method that changes a network takes the Lock).
 *
 *   down ──up/tap──▶ starting ──▶ up ──down/idle──▶ stopping ──▶ down | stub
 *   stub ──up/tap──▶ starting        (a failure: back to where it was, or failed)
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { Target } from '../desired/desired.js';
import type { Level } from '../desired/model.js';
import type { NetworkState } from '../model.js';
import { VnetError } from '../api/errors.js';
import { ApplyError } from '../reconcile/apply.js';
import type { SubnetConflict } from '../reconcile/conflicts.js';
import { PlanError, type Scope } from '../reconcile/diff.js';
import type { Mode, Reconciler } from '../reconcile/reconciler.js';
import { unresolved, type NetworkSpec } from '../spec/spec.js';
import type { Clock, Timer } from '../sys/clock.js';
import type { Lock, Mutex } from '../sys/mutex.js';

export interface NetworkRecord {
  /** the running copy of the definition */
  spec: NetworkSpec;
  state: NetworkState;
  /** what the host should hold for it */
  level: Level;
  /** brought up by `vnet up`: stays up until `vnet down` */
  pinned: boolean;
  reason?: string;
  idleTimer?: Timer;
  /** while up: something on the host took (part of) its subnet since it came up */
  conflict?: SubnetConflict;
}

export interface RuntimeEvents {
  state: [name: string, state: NetworkState, reason: string | undefined];
  /** a record changed in a way a restarted vnetd must know */
  changed: [];
  /** a conflict with the host's routes appeared, changed or cleared (undefined) while the network is up */
  conflict: [name: string, conflict: SubnetConflict | undefined];
}


export interface RuntimeOptions {
  reconciler: Reconciler;
  mutex: Mutex;
  clock: Clock;
  log: Logger;
  /** taps now on a network (the tap registry) */
  tapsOn(network: string): number;
  /** save the records now (write-ahead: a network's intent is on disk before its first step) */
  persist(): Promise<void>;
  /**
   * The spec to bring up, from one that is down: address = "auto" gets a subnet free on the host
   * now (it needs the host's routes, so parsing cannot do it). Default: as it is.
   */
  prepare?(spec: NetworkSpec): Promise<NetworkSpec>;
}

export class NetworkRuntime extends EventEmitter<RuntimeEvents> {
  private readonly records = new Map<string, NetworkRecord>();
  /** the autostart networks brought up since the host started (kept in the runtime folder's state) */
  private readonly autostarted = new Set<string>();
  private closed = false;

  constructor(private readonly opts: RuntimeOptions) {
    super();
  }

  get(name: string): Readonly<NetworkRecord> | undefined {
    return this.records.get(name);
  }

  all(): ReadonlyArray<Readonly<NetworkRecord>> {
    return [...this.records.values()];
  }

  /** The autostart networks a vnetd brought up since the host started: not again until it restarts. */
  autostartedNames(): string[] {
    return [...this.autostarted].sort();
  }

  /** Is any network up or changing? (A stub is only an UP bridge: it needs no daemon.) */
  active(): boolean {
    return [...this.records.values()].some((r) => r.state !== 'down' && r.state !== 'stub');
  }

  /** What the reconciler should hold, for every network vnet keeps a record of. */
  targets(override?: { spec: NetworkSpec; level: Level }): Target[] {
    const out: Target[] = [];
    for (const r of this.records.values()) if (r.spec.name !== override?.spec.name) out.push({ spec: r.spec, level: r.level });
    if (override) out.push(override);
    return out;
  }

  /** Adopt a network a previous vnetd recorded (start-up), before `restore` converges it. */
  adopt(spec: NetworkSpec, saved: { state: NetworkState; pinned: boolean; level?: Level }): void {
    const level: Level = saved.level ?? (saved.state === 'stub' ? 'stub' : saved.state === 'stopping' || saved.state === 'down' ? 'down' : 'up');
    this.records.set(spec.name, { spec, state: level === 'down' ? 'stopping' : level === 'up' ? 'starting' : 'stub', level, pinned: saved.pinned });
  }

  /**
   * Start-up: converge every adopted network to its level (each on its own: one that cannot come
   * back does not keep the others down), then sweep what no network accounts for. Stubs are raised;
   * autostart networks come up pinned, once per boot (`boot.done`: those a vnetd of this boot
   * already started), so a `vnet down` holds across vnetd restarts until the host restarts.
   */
  async restore(lock: Lock, stubs: readonly NetworkSpec[], boot: { autostart?: readonly NetworkSpec[]; done?: Iterable<string> } = {}): Promise<void> {
    for (const name of boot.done ?? []) this.autostarted.add(name);
    for (const spec of stubs) if (!this.records.has(spec.name)) this.records.set(spec.name, { spec, state: 'down', level: 'stub', pinned: false });
    for (const spec of boot.autostart ?? []) {
      if (this.autostarted.has(spec.name)) continue;
      this.autostarted.add(spec.name);
      this.opts.log.info({ network: spec.name }, 'autostart');
      const r = this.records.get(spec.name);
      if (r) Object.assign(r, { spec, level: 'up', pinned: true });
      else this.records.set(spec.name, { spec, state: 'starting', level: 'up', pinned: true });
    }
    for (const r of [...this.records.values()]) {
      try {
        // an "auto" network coming up for the first time (autostart) needs its subnet first
        if (r.level === 'up' && unresolved(r.spec) && this.opts.prepare) r.spec = await this.opts.prepare(r.spec);
        await this.converge(lock, r, r.level, r.level === 'down' ? 'best-effort' : 'rollback');
        this.finish(r);
      } catch (err) {
        this.opts.log.error({ err, network: r.spec.name }, 'could not restore network');
        // what this attempt made was rolled back; what a previous vnetd left of it (its bridge,
        // with VMs on it) stays, but it gets no rules, server or address until `up` succeeds
        r.level = 'down';
        this.fail(r, err);
      }
      this.scheduleIdle(r);
    }
    await this.opts.reconciler.converge(lock, this.targets(), { names: new Set(), sweep: true }, 'best-effort');
    this.emit('changed');
  }

  /** Bring a network fully up (from down, stub or failed). */
  async up(lock: Lock, spec: NetworkSpec, opts: { pin?: boolean } = {}): Promise<NetworkRecord> {
    let r = this.records.get(spec.name);
    if (r?.state === 'up') {
      if (opts.pin) this.pin(r);
      return r;
    }
    if (!r) {
      r = { spec, state: 'down', level: 'down', pinned: false };
      this.records.set(spec.name, r);
    }
    const was = { level: r.level, state: r.state };
    r.spec = spec;
    const t0 = performance.now();
    r.level = 'up';
    this.setState(r, 'starting');
    try {
      if (this.opts.prepare) r.spec = spec = await this.opts.prepare(spec);
      await this.converge(lock, r, 'up', 'rollback');
    } catch (err) {
      // never left in "starting": back to the stub it was, gone, or failed (with taps or pinned)
      r.level = was.level;
      if (was.state === 'stub') this.setState(r, 'stub');
      else if (this.opts.tapsOn(spec.name) === 0 && !r.pinned) this.forget(r);
      else this.fail(r, err);
      throw this.toError(spec, 'could not come up', err);
    }
    this.setState(r, 'up');
    if (opts.pin) this.pin(r);
    this.opts.log.info({ network: spec.name, bridge: spec.bridge.name, ms: +(performance.now() - t0).toFixed(1) }, 'network up');
    return r;
  }

  /** Take a network down: to nothing, or to its stub. */
  async down(lock: Lock, name: string, toStub = false): Promise<void> {
    const r = this.records.get(name);
    if (!r) return;
    this.opts.clock.clearTimeout(r.idleTimer);
    r.idleTimer = undefined;
    const t0 = performance.now();
    this.setState(r, 'stopping');
    try {
      await this.converge(lock, r, toStub ? 'stub' : 'down', 'best-effort');
    } catch (err) {
      this.fail(r, err);
      throw this.toError(r.spec, 'did not come down cleanly', err);
    }
    r.pinned = false;
    if (toStub) this.setState(r, 'stub');
    else this.forget(r);
    this.opts.log.info({ network: name, ms: +(performance.now() - t0).toFixed(1), stub: toStub }, 'network down');
  }

  /**
   * Apply an edited definition to a running network, at the level it is at. A failure rolls back
   * to the running copy, which stays.
   */
  async reload(lock: Lock, name: string, spec: NetworkSpec): Promise<void> {
    const r = this.records.get(name);
    if (!r) return;
    const old = r.spec;
    r.spec = spec;
    try {
      await this.converge(lock, r, r.level, 'rollback');
    } catch (err) {
      r.spec = old;
      await this.opts.persist();
      throw this.toError(spec, 'could not take the edited definition', err);
    }
    this.opts.log.info({ network: name }, 'definition reloaded');
    this.scheduleIdle(r);
  }

  /** Someone else deleted our bridge: the network failed; the next `up` or tap rebuilds it. */
  async bridgeLost(lock: Lock, name: string, bridge: string): Promise<void> {
    const r = this.records.get(name);
    if (!r || r.state === 'stopping' || r.state === 'down') return;
    this.opts.log.warn({ network: name, bridge }, 'bridge deleted by someone else');
    await this.converge(lock, r, 'down', 'best-effort').catch((err) => this.opts.log.warn({ err, network: name }, 'cleaning up after the lost bridge'));
    this.setState(r, 'failed', `bridge ${bridge} was deleted by someone else`);
  }

  /** The DHCP/DNS server gave up: the network failed (its bridge, rules and taps stay). */
  dhcpFailed(name: string, reason: string): void {
    const r = this.records.get(name);
    if (!r || r.level !== 'up') return;
    this.opts.log.error({ network: name, reason }, 'dnsmasq keeps failing; network marked failed');
    this.setState(r, 'failed', `dnsmasq keeps failing: ${reason}`);
  }

  /** The route watch saw a conflict appear, change or clear on an up network. Nothing is torn down. */
  setConflict(name: string, conflict: SubnetConflict | undefined): void {
    const r = this.records.get(name);
    if (!r || (r.conflict === undefined && conflict === undefined)) return;
    if (conflict) r.conflict = conflict;
    else delete r.conflict;
    this.emit('conflict', name, conflict);
  }

  /** A tap on the network went (or a bring-up for a tap did not lead to one): maybe idle down later. */
  scheduleIdle(r: NetworkRecord): void {
    const { spec } = r;
    if (this.opts.tapsOn(spec.name) > 0 || r.pinned || !spec.lifecycle.onDemand || this.closed || r.state !== 'up') return;
    this.opts.clock.clearTimeout(r.idleTimer);
    r.idleTimer = this.opts.clock.setTimeout(() => {
      r.idleTimer = undefined;
      void this.opts.mutex
        .run(async (lock) => {
          if (this.opts.tapsOn(spec.name) > 0 || r.pinned || this.records.get(spec.name) !== r || r.state !== 'up') return;
          this.opts.log.info({ network: spec.name }, 'last tap gone: taking network down');
          await this.down(lock, spec.name, spec.lifecycle.standby === 'stub');
        })
        .catch((err) => this.opts.log.error({ err }, 'idle-down failed'));
    }, spec.lifecycle.idleDown * 1000);
  }

  /** A tap arrived: no idle-down while it lives. */
  tapArrived(name: string): void {
    const r = this.records.get(name);
    if (!r) return;
    this.opts.clock.clearTimeout(r.idleTimer);
    r.idleTimer = undefined;
  }

  /** Stop timers; the dataplane stays in the kernel for the next vnetd to adopt. */
  close(): void {
    this.closed = true;
    for (const r of this.records.values()) this.opts.clock.clearTimeout(r.idleTimer);
  }

  /** Names of the networks a full repair may touch: not those that failed (they wait for `up`). */
  healthy(): Set<string> {
    return new Set([...this.records.values()].filter((r) => r.state !== 'failed').map((r) => r.spec.name));
  }

  // ---- internals ----

  /** Take the network to `level`. The level is its intent from now on (a restarted vnetd finishes the job), also if this fails. */
  private async converge(lock: Lock, r: NetworkRecord, level: Level, mode: Mode): Promise<void> {
    r.level = level;
    await this.opts.persist();
    const scope: Scope = { names: new Set([r.spec.name]), sweep: false };
    await this.opts.reconciler.converge(lock, this.targets(), scope, mode);
  }

  private finish(r: NetworkRecord): void {
    if (r.level === 'up') this.setState(r, 'up');
    else if (r.level === 'stub') this.setState(r, 'stub');
    else this.forget(r);
  }

  private pin(r: NetworkRecord): void {
    r.pinned = true;
    this.opts.clock.clearTimeout(r.idleTimer);
    r.idleTimer = undefined;
    this.emit('changed');
  }

  private fail(r: NetworkRecord, err: unknown): void {
    this.setState(r, 'failed', err instanceof Error ? err.message : String(err));
  }

  private forget(r: NetworkRecord): void {
    this.setState(r, 'down');
    this.records.delete(r.spec.name);
    this.emit('changed');
  }

  private setState(r: NetworkRecord, state: NetworkState, reason?: string): void {
    r.state = state;
    r.reason = reason;
    // a conflict is about the subnet in use: one going down or to its stub has none left
    if (r.conflict && (state === 'stopping' || state === 'down' || state === 'stub')) {
      delete r.conflict;
      this.emit('conflict', r.spec.name, undefined);
    }
    this.emit('state', r.spec.name, state, reason);
    this.emit('changed');
  }

  private toError(spec: NetworkSpec, what: string, err: unknown): VnetError {
    if (err instanceof PlanError) return err;
    const message = err instanceof ApplyError || err instanceof Error ? err.message : String(err);
    return new VnetError('EIO', `network "${spec.name}" ${what}: ${message}`, { cause: err });
  }
}
