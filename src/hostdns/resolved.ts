/**
 * The host resolves guest names: where systemd-resolved runs, the bridge of an up network with a
 * domain gets the network's DNS server and "~domain" (a routing-only domain: only names under it
 * go there) through resolved's D-Bus API, as libvirt and NetworkManager do; RevertLink takes them
 * back on down. The bus is VNET_DBUS_ADDRESS when that is an address, else DBUS_SYSTEM_BUS_ADDRESS,
 * else the system bus's standard socket.
 *
 * Without resolved (or without a bus) nothing happens and nothing fails: state() says so with
 * undefined and the diff plans no step. Every call carries NO_AUTO_START, so vnet never starts a
 * resolved that is installed but not running, and every call is bounded by `timeoutMs`.
 */
import type { Message, MessageBus } from 'dbus-next';
import { busMayExist, loadDbus, loadedDbus } from '../dbus/load.js';
import type { Logger } from 'pino';
import type { HostDns } from '../reconcile/backends.js';
import { domainsBody, parseDomains, parseServers, RESOLVED, serversBody, type LinkDns } from './resolved-api.js';

const NO_AUTO_START = 2;
const DEFAULT_SYSTEM_BUS = 'unix:path=/var/run/dbus/system_bus_socket';
const ABSENT = new Set(['org.freedesktop.DBus.Error.ServiceUnknown', 'org.freedesktop.DBus.Error.NameHasNoOwner']);
const NO_SUCH_LINK = 'org.freedesktop.resolve1.NoSuchLink';
const SIGNAL = 4;
const OWNER_MATCH = `type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='${RESOLVED.name}'`;
/** 50 ms apart: resolved has up to 5 s to notice a new bridge */
const LINK_ATTEMPTS = 100;

interface CallError {
  type?: string;
  text?: string;
  message?: string;
}

const errorType = (err: unknown) => (err as CallError)?.type ?? '';
const errorText = (err: unknown) => (err as CallError)?.text ?? (err as CallError)?.message ?? String(err);

export class ResolvedError extends Error {
  override name = 'ResolvedError';
}

/** The bus vnet talks to resolved on. */
export function systemBusAddress(env: NodeJS.ProcessEnv = process.env): string {
  const own = env.VNET_DBUS_ADDRESS;
  if (own && own !== 'system') return own;
  return env.DBUS_SYSTEM_BUS_ADDRESS || DEFAULT_SYSTEM_BUS;
}

export class Resolved implements HostDns {
  readonly name = 'systemd-resolved';
  private bus?: MessageBus;
  private connecting?: Promise<MessageBus | undefined>;
  private readonly address: string;
  private readonly timeoutMs: number;
  private readonly listeners = new Set<() => void>();
  private pending?: NodeJS.Timeout;

  constructor(private readonly opts: { log: Logger; address?: string; timeoutMs?: number }) {
    this.address = opts.address ?? systemBusAddress();
    this.timeoutMs = opts.timeoutMs ?? 25_000;
  }

  async available(): Promise<boolean> {
    const bus = await this.connection();
    if (!bus) return false;
    try {
      const msg = new (loadedDbus().Message)({ destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member: 'NameHasOwner', signature: 's', body: [RESOLVED.name] });
      const reply = await this.bounded(bus.call(msg));
      return reply?.body[0] === true;
    } catch (err) {
      this.opts.log.debug({ err: errorText(err) }, 'systemd-resolved: could not ask the bus whether it runs');
      return false;
    }
  }

  async state(index: number): Promise<LinkDns | undefined> {
    const bus = await this.connection();
    if (!bus) return undefined;
    try {
      const [path] = await this.call(bus, RESOLVED.path, RESOLVED.manager, 'GetLink', 'i', [index]);
      const get = async (prop: string) => (await this.call(bus, String(path), 'org.freedesktop.DBus.Properties', 'Get', 'ss', [RESOLVED.link, prop]))[0];
      const value = (v: unknown) => (v instanceof loadedDbus().Variant ? v.value : v);
      return { servers: parseServers(value(await get('DNS'))), domains: parseDomains(value(await get('Domains'))) };
    } catch (err) {
      if (ABSENT.has(errorType(err))) return undefined;
      // resolved does not know the link (yet): it holds nothing for it
      if (errorType(err) === NO_SUCH_LINK) return { servers: [], domains: [] };
      this.opts.log.warn({ err: errorText(err), index }, 'systemd-resolved: could not read a link');
      return undefined;
    }
  }

  async register(index: number, dns: LinkDns): Promise<void> {
    const bus = await this.connection();
    if (!bus) return;
    try {
      await this.untilKnown(() => this.call(bus, RESOLVED.path, RESOLVED.manager, 'SetLinkDNS', 'ia(iay)', [index, serversBody(dns.servers)]));
      await this.call(bus, RESOLVED.path, RESOLVED.manager, 'SetLinkDomains', 'ia(sb)', [index, domainsBody(dns.domains)]);
      // never the host's default route for DNS: only names under the domain go to the bridge
      await this.call(bus, RESOLVED.path, RESOLVED.manager, 'SetLinkDefaultRoute', 'ib', [index, false]).catch((err: unknown) => {
        if (errorType(err) !== 'org.freedesktop.DBus.Error.UnknownMethod') throw err;
      });
    } catch (err) {
      if (ABSENT.has(errorType(err))) return;
      throw new ResolvedError(`systemd-resolved refused the DNS settings of link ${index}: ${errorText(err)}`, { cause: err });
    }
  }

  async revert(index: number): Promise<void> {
    const bus = await this.connection();
    if (!bus) return;
    try {
      await this.call(bus, RESOLVED.path, RESOLVED.manager, 'RevertLink', 'i', [index]);
    } catch (err) {
      // gone (resolved stopped, or the link with it): what was asked holds
      if (ABSENT.has(errorType(err)) || errorType(err) === NO_SUCH_LINK) return;
      throw new ResolvedError(`systemd-resolved refused to revert link ${index}: ${errorText(err)}`, { cause: err });
    }
  }

  /**
   * resolved learns of a new link from its own netlink socket, a moment after vnet made the bridge:
   * a call for it until then fails with NoSuchLink. Try again, a bounded number of times.
   */
  private async untilKnown<T>(work: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await work();
      } catch (err) {
        if (errorType(err) !== NO_SUCH_LINK || attempt >= LINK_ATTEMPTS) throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  /**
   * Call `changed` when resolved (re)starts: a new resolved holds none of the links' settings. Only
   * the bus daemon speaks for name owners, so no other peer can make vnetd converge at will.
   */
  watch(changed: () => void): () => void {
    this.listeners.add(changed);
    void this.connection();
    return () => {
      this.listeners.delete(changed);
      if (this.listeners.size === 0) this.close();
    };
  }

  close(): void {
    clearTimeout(this.pending);
    this.pending = undefined;
    const bus = this.bus;
    this.bus = undefined;
    bus?.disconnect();
  }

  private connection(): Promise<MessageBus | undefined> {
    if (this.bus) return Promise.resolve(this.bus);
    this.connecting ??= this.connect().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async connect(): Promise<MessageBus | undefined> {
    // no bus socket: no bus, and dbus-next is not even loaded (tried again at the next change)
    if (!busMayExist(this.address)) return undefined;
    const dbus = await loadDbus();
    const bus = dbus.sessionBus({ busAddress: this.address });
    let connecting: ((err: unknown) => void) | undefined;
    bus.on('error', (err: unknown) => (connecting ? connecting(err) : this.opts.log.debug({ err: errorText(err) }, 'systemd-resolved: bus error')));
    try {
      await this.bounded(
        new Promise<void>((resolve, reject) => {
          connecting = reject;
          bus.once('connect', () => resolve());
        }),
      );
    } catch (err) {
      bus.disconnect();
      // no bus here: tried again at the next change, never by a timer
      this.opts.log.debug({ err: errorText(err), bus: this.address }, 'systemd-resolved: no system bus');
      return undefined;
    } finally {
      connecting = undefined;
    }
    (bus as unknown as { _connection: NodeJS.EventEmitter })._connection.once('end', () => {
      if (this.bus === bus) this.bus = undefined;
    });
    this.bus = bus;
    bus.on('message', (msg: Message) => {
      const body = (msg.body ?? []) as unknown[];
      if (msg.type !== SIGNAL || msg.sender !== 'org.freedesktop.DBus' || msg.member !== 'NameOwnerChanged' || body[0] !== RESOLVED.name || !body[2]) return;
      this.notify();
    });
    await this.bounded(bus.call(new (loadedDbus().Message)({ destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member: 'AddMatch', signature: 's', body: [OWNER_MATCH] }))).catch(
      (err: unknown) => this.opts.log.warn({ err: errorText(err) }, 'systemd-resolved: could not watch for its restarts'),
    );
    return bus;
  }

  /** Tell the watchers once for a burst. */
  private notify(): void {
    if (this.listeners.size === 0 || this.pending) return;
    this.pending = setTimeout(() => {
      this.pending = undefined;
      for (const l of [...this.listeners]) l();
    }, 200);
    this.pending.unref?.();
  }

  private async call(bus: MessageBus, path: string, iface: string, member: string, signature: string, body: unknown[]): Promise<unknown[]> {
    const msg = new (loadedDbus().Message)({ destination: RESOLVED.name, path, interface: iface, member, signature, body, flags: NO_AUTO_START });
    const reply = await this.bounded(bus.call(msg as Message));
    return (reply?.body ?? []) as unknown[];
  }

  private async bounded<T>(work: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer on ${this.address} in ${this.timeoutMs} ms`)), this.timeoutMs);
    });
    try {
      return await Promise.race([work, late]);
    } finally {
      clearTimeout(timer);
    }
  }
}
