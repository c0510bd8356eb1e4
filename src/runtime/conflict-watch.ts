/**
 * Subnet safety while networks are up: a route or address that appears later (a VPN coming up
 * with 192.168.122.0/24) is noticed from the kernel's route and address events, never by polling.
 * After a quiet moment the watch lists the host's links, routes and addresses and reports, per up
 * network, a conflict that appeared, changed or went away. Nothing is torn down: the network keeps
 * running and status says why its guests may not reach that subnet. Runs only while a network is
 * up, so an idle machine has no such socket.
 */
import type { Logger } from 'pino';
import { describeConflict, subnetConflict, type HostAddressing, type SubnetConflict } from '../reconcile/conflicts.js';
import type { LinkBackend } from '../reconcile/backends.js';
import type { NetworkSpec } from '../spec/spec.js';
import type { Clock, Timer } from '../sys/clock.js';

export interface ConflictWatchOptions {
  host: Pick<LinkBackend, 'listLinks' | 'listRoutes' | 'listAddresses'>;
  /** subscribe to route and address changes (the kernel's events); returns how to stop */
  subscribe(onChange: () => void): () => void;
  /** the networks that are up now: the ones checked */
  networks(): readonly NetworkSpec[];
  /** a network's conflict appeared, changed, or cleared (undefined) */
  report(network: string, conflict: SubnetConflict | undefined): void;
  clock: Clock;
  log: Logger;
  /** quiet time after the last event before the check (a VPN adds several routes at once); default 200 ms */
  debounceMs?: number;
}

const keyOf = (c: SubnetConflict | undefined) => (c ? `${c.subnet}\0${c.interface}\0${c.detail}` : '');

export class ConflictWatch {
  private stop?: () => void;
  private timer?: Timer;
  private running?: Promise<void>;
  private again = false;
  /** what was last reported per network */
  private readonly known = new Map<string, SubnetConflict>();
  private closed = false;

  constructor(private readonly opts: ConflictWatchOptions) {}

  /** Watch while some network is up; stop (and forget) when none is. */
  watch(active: boolean): void {
    if (active && !this.closed) {
      this.stop ??= this.opts.subscribe(() => this.schedule());
      return;
    }
    this.stop?.();
    this.stop = undefined;
    this.opts.clock.clearTimeout(this.timer);
    this.timer = undefined;
    for (const name of this.known.keys()) this.opts.report(name, undefined);
    this.known.clear();
  }

  /** Stop for good (vnetd stops: the records stay as they are, nothing more is reported). */
  close(): void {
    this.closed = true;
    this.known.clear();
    this.watch(false);
  }

  private schedule(): void {
    this.opts.clock.clearTimeout(this.timer);
    this.timer = this.opts.clock.setTimeout(() => {
      this.timer = undefined;
      void this.check().catch((err) => this.opts.log.warn({ err }, 'could not check subnets against the host\'s routes'));
    }, this.opts.debounceMs ?? 200);
  }

  /** List the host now and report every change of conflict. One at a time; a call during a check runs once more after it. */
  async check(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.checkOnce();
      } while (this.again && !this.closed);
    })().finally(() => (this.running = undefined));
    return this.running;
  }

  private async checkOnce(): Promise<void> {
    const h = this.opts.host;
    const [links, routes, addresses] = await Promise.all([h.listLinks(), h.listRoutes(), h.listAddresses()]);
    if (this.closed || !this.stop) return;
    const host: HostAddressing = { links, routes, addresses };
    const up = this.opts.networks();
    // no longer up (down, stub, failed): no subnet in use, no conflict
    for (const name of [...this.known.keys()]) {
      if (up.some((s) => s.name === name)) continue;
      this.known.delete(name);
      this.opts.report(name, undefined);
    }
    for (const spec of up) {
      const now = subnetConflict(spec, host);
      const before = this.known.get(spec.name);
      if (keyOf(now) === keyOf(before)) continue;
      if (now) {
        this.known.set(spec.name, now);
        this.opts.log.warn({ network: spec.name, ...now }, `network "${spec.name}": ${describeConflict(now)}; guests may not reach it (the network stays up)`);
      } else {
        this.known.delete(spec.name);
        this.opts.log.info({ network: spec.name }, `network "${spec.name}": subnet conflict cleared`);
      }
      this.opts.report(spec.name, now);
    }
  }
}
