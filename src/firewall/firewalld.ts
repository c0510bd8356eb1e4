/**
 * firewalld beside vnet's table: on Fedora and alike, firewalld's own table rejects what its
 * zones do not allow, and an accept in vnet's table cannot override a reject in another table.
 * So while a network is up its bridge is bound, at run time, to one of vnet's zones (see
 * firewalld-api.ts), through firewalld's D-Bus API on the system bus (DBUS_SYSTEM_BUS_ADDRESS, or
 * the standard socket). A runtime binding is gone after firewalld reloads or restarts: watch()
 * reports both (its Reloaded signal, a new owner of its name) and the daemon converges again.
 *
 * Without firewalld on the bus (or without a bus) nothing changes: bound() is empty and bind()
 * and unbind() do nothing. The connection stays open while vnetd runs, so firewalld starting
 * later is noticed; a bus that is not there at all is tried again at vnetd's next change (no
 * polling on a host without one), a bus connection that ends is retried with a backoff. Every call carries NO_AUTO_START, so vnet never starts a firewalld
 * that is installed but not running. A firewalld that answers slowly (it answers only once it
 * has loaded its configuration) gets `timeoutMs`.
 */
import type { Message, MessageBus } from 'dbus-next';
import { busMayExist, loadDbus, loadedDbus } from '../dbus/load.js';
import type { Logger } from 'pino';
import type { HostFirewall } from '../reconcile/backends.js';
import type { ForwardMode } from '../spec/spec.js';
import { Backoff } from '../sys/backoff.js';
import { systemClock, type Clock, type Timer } from '../sys/clock.js';
import { boundInterfaces, FIREWALLD, firewalldCode, firewalldSignal, isVnetZone, MATCH_RULES, zoneFor } from './firewalld-api.js';

const NO_AUTO_START = 2;
const DEFAULT_SYSTEM_BUS = 'unix:path=/var/run/dbus/system_bus_socket';
/** the bus daemon's answer to a call for a name nobody owns (with NO_AUTO_START) */
const ABSENT = new Set(['org.freedesktop.DBus.Error.ServiceUnknown', 'org.freedesktop.DBus.Error.NameHasNoOwner']);

export interface FirewalldOptions {
  log: Logger;
  /** bus address; default DBUS_SYSTEM_BUS_ADDRESS, else the system bus's standard socket */
  address?: string;
  /** ms one call (or connecting) may take; default 25 000, D-Bus's own default */
  timeoutMs?: number;
  clock?: Clock;
}

export class FirewalldError extends Error {
  override name = 'FirewalldError';
}

interface CallError {
  type?: string;
  text?: string;
  message?: string;
}

function errorText(err: unknown): string {
  const e = err as CallError;
  return e?.text ?? e?.message ?? String(err);
}

function isAbsent(err: unknown): boolean {
  return ABSENT.has((err as CallError)?.type ?? '');
}

export class Firewalld implements HostFirewall {
  readonly name = 'firewalld';
  private readonly log: Logger;
  private readonly address: string;
  private readonly timeoutMs: number;
  private readonly clock: Clock;
  private bus?: MessageBus;
  private connecting?: Promise<MessageBus | undefined>;
  /** firewalld's unique name on the bus now; "" while it is not running */
  private owner = '';
  private readonly listeners = new Set<() => void>();
  private readonly backoff = new Backoff({ initialMs: 1000, maxMs: 60_000 });
  private retry?: Timer;
  private pending?: Timer;
  /** a connection worked once: when it is lost, retry by timer */
  private hadBus = false;

  constructor(opts: FirewalldOptions) {
    this.log = opts.log;
    this.address = opts.address ?? (process.env.DBUS_SYSTEM_BUS_ADDRESS || DEFAULT_SYSTEM_BUS);
    this.timeoutMs = opts.timeoutMs ?? 25_000;
    this.clock = opts.clock ?? systemClock;
  }

  async bound(): Promise<ReadonlySet<string>> {
    const bus = await this.connection();
    if (!bus) return new Set();
    try {
      const [active] = await this.call(bus, FIREWALLD.zoneIface, 'getActiveZones', '', []);
      return boundInterfaces(active);
    } catch (err) {
      // never a throw here: a teardown must not fail because firewalld does not answer
      if (!isAbsent(err)) this.log.warn({ err: errorText(err) }, 'firewalld: could not list the active zones');
      return new Set();
    }
  }

  async bind(bridge: string, mode: ForwardMode): Promise<void> {
    const zone = zoneFor(mode);
    if (!zone) return;
    const bus = await this.connection();
    if (!bus) return;
    try {
      await this.call(bus, FIREWALLD.zoneIface, 'addInterface', 'ss', [zone, bridge]);
      return;
    } catch (err) {
      if (isAbsent(err)) return;
      const code = firewalldCode(errorText(err));
      if (code === 'ZONE_ALREADY_SET') return;
      if (code === 'INVALID_ZONE')
        throw new FirewalldError(
          `firewalld has no zone "${zone}" for ${bridge}: install vnet's firewalld zones and policies (\`make install\` puts them beside firewalld's) and run \`firewall-cmd --reload\``,
          { cause: err },
        );
      if (code !== 'ZONE_CONFLICT') throw new FirewalldError(`firewalld refused to bind ${bridge} to zone "${zone}": ${errorText(err)}`, { cause: err });
    }
    const [current] = await this.call(bus, FIREWALLD.zoneIface, 'getZoneOfInterface', 's', [bridge]);
    if (typeof current === 'string' && isVnetZone(current)) {
      // vnet's own binding from another forward mode
      await this.call(bus, FIREWALLD.zoneIface, 'changeZoneOfInterface', 'ss', [zone, bridge]);
      return;
    }
    // the admin put it in a zone of theirs: that is their word on what passes
    this.log.warn({ bridge, zone: current }, `firewalld: ${bridge} is in zone "${String(current)}", not vnet's; leaving it there (DHCP, DNS and forwarding pass only if that zone allows them)`);
  }

  async unbind(bridge: string): Promise<void> {
    const bus = await this.connection();
    if (!bus) return;
    try {
      const [zone] = await this.call(bus, FIREWALLD.zoneIface, 'getZoneOfInterface', 's', [bridge]);
      if (typeof zone !== 'string' || !isVnetZone(zone)) return;
      await this.call(bus, FIREWALLD.zoneIface, 'removeInterface', 'ss', [zone, bridge]);
    } catch (err) {
      if (isAbsent(err)) return;
      // gone meanwhile (a reload, someone else): what was asked holds
      if (['UNKNOWN_INTERFACE', 'NOT_ENABLED', 'ZONE_CONFLICT'].includes(firewalldCode(errorText(err)) ?? '')) return;
      throw new FirewalldError(`firewalld refused to unbind ${bridge}: ${errorText(err)}`, { cause: err });
    }
  }

  watch(changed: () => void): () => void {
    this.listeners.add(changed);
    void this.connection();
    return () => {
      this.listeners.delete(changed);
      if (this.listeners.size === 0) this.close();
    };
  }

  /** Disconnect and stop retrying (watch()'s stop function does it when the last watcher goes). */
  close(): void {
    this.clock.clearTimeout(this.retry);
    this.clock.clearTimeout(this.pending);
    this.retry = this.pending = undefined;
    const bus = this.bus;
    this.bus = undefined;
    bus?.disconnect();
  }

  // ---- the bus ----

  private connection(): Promise<MessageBus | undefined> {
    if (this.bus) return Promise.resolve(this.bus);
    this.connecting ??= this.connect().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async connect(): Promise<MessageBus | undefined> {
    if (!busMayExist(this.address)) {
      this.log.debug({ bus: this.address }, 'firewalld: no system bus');
      if (this.hadBus) this.scheduleRetry();
      return undefined;
    }
    const dbus = await loadDbus();
    const bus = dbus.sessionBus({ busAddress: this.address });
    // one listener for the connection's whole life: an 'error' nobody listens to would throw
    let connecting: ((err: unknown) => void) | undefined;
    bus.on('error', (err: unknown) => (connecting ? connecting(err) : this.log.debug({ err: errorText(err) }, 'firewalld: bus error')));
    try {
      await this.bounded(
        new Promise<void>((resolve, reject) => {
          connecting = reject;
          bus.once('connect', () => resolve());
        }),
      );
    } catch (err) {
      bus.disconnect();
      this.log.debug({ err: errorText(err), bus: this.address }, 'firewalld: no system bus');
      // a bus that never answered is tried again at the next call (no timer on a host without one);
      // one that went away is retried by timer (lost())
      if (this.hadBus) this.scheduleRetry();
      return undefined;
    } finally {
      connecting = undefined;
    }
    bus.on('message', (msg: Message) => this.onSignal(msg));
    // dbus-next does not surface the end of its stream on MessageBus; its connection does
    (bus as unknown as { _connection: NodeJS.EventEmitter })._connection.once('end', () => this.lost(bus));
    this.bus = bus;
    this.hadBus = true;
    this.backoff.reset();
    try {
      for (const rule of MATCH_RULES) await this.bounded(bus.call(busCall('AddMatch', 's', [rule])));
      const owner = await this.bounded(bus.call(busCall('GetNameOwner', 's', [FIREWALLD.name]))).then(
        (reply) => String(reply?.body[0] ?? ''),
        (err: unknown) => {
          if (isAbsent(err)) return '';
          throw err;
        },
      );
      this.owner = owner;
      // bindings made while we were away, or never made (no bus when the networks came up)
      if (owner) this.notify();
    } catch (err) {
      this.log.warn({ err: errorText(err) }, 'firewalld: could not watch for its reloads');
    }
    return bus;
  }

  private lost(bus: MessageBus): void {
    if (this.bus !== bus) return;
    this.bus = undefined;
    this.owner = '';
    this.log.warn({ bus: this.address }, 'firewalld: the system bus connection ended; reconnecting');
    this.scheduleRetry();
  }

  /** While someone watches, try again later: the bus (and firewalld with it) may come back. */
  private scheduleRetry(): void {
    if (this.listeners.size === 0 || this.retry) return;
    const delay = this.backoff.fail() ?? 60_000;
    this.retry = this.clock.setTimeout(() => {
      this.retry = undefined;
      if (this.listeners.size > 0) void this.connection();
    }, delay);
    this.retry.unref?.();
  }

  private onSignal(msg: Message): void {
    const s = firewalldSignal(msg, this.owner);
    if (s === undefined) return;
    if (s === 'reloaded') {
      this.log.info('firewalld reloaded: binding vnet bridges again');
      this.notify();
      return;
    }
    this.owner = s.owner;
    if (s.owner) {
      this.log.info({ owner: s.owner }, 'firewalld started: binding vnet bridges');
      this.notify();
    }
  }

  /** Tell the watchers, once for a burst (a reload and a restart close together are one change). */
  private notify(): void {
    if (this.listeners.size === 0 || this.pending) return;
    this.pending = this.clock.setTimeout(() => {
      this.pending = undefined;
      for (const l of [...this.listeners]) l();
    }, 200);
    this.pending.unref?.();
  }

  private async call(bus: MessageBus, iface: string, member: string, signature: string, body: unknown[]): Promise<unknown[]> {
    const msg = new (loadedDbus().Message)({ destination: FIREWALLD.name, path: FIREWALLD.path, interface: iface, member, signature, body, flags: NO_AUTO_START });
    const reply = await this.bounded(bus.call(msg));
    return (reply?.body ?? []) as unknown[];
  }

  /** dbus-next calls have no timeout of their own and are not rejected when the stream ends. */
  private async bounded<T>(work: Promise<T>): Promise<T> {
    let timer: Timer | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = this.clock.setTimeout(() => reject(new Error(`no answer on ${this.address} in ${this.timeoutMs} ms`)), this.timeoutMs);
    });
    try {
      return await Promise.race([work, late]);
    } finally {
      this.clock.clearTimeout(timer);
    }
  }
}

function busCall(member: string, signature: string, body: unknown[]): Message {
  return new (loadedDbus().Message)({ destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member, signature, body });
}
