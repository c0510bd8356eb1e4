/**
 * Fake backends for fast tests of the reconciler and the runtime: an in-memory kernel (links,
 * addresses, routes), firewall (the table as data, changed by the same simulate() the real
 * backend's caller trusts), /proc/sys and DHCP servers, and a clock that only moves when told.
 * Each can be told to fail a call, to test rollback. The real backends have their own tests in
 * namespaces.
 */
import type { DhcpConfig } from '../../src/desired/model.js';
import { emptyTable, simulate, type TableState, type Transaction } from '../../src/firewall/table.js';
import type { Link, LinkAddress, LinkChange, Route } from '../../src/netlink/rtnl.js';
import type { Backends, DhcpBackend, FirewallBackend, HostFirewall, LinkBackend, SysctlBackend } from '../../src/reconcile/backends.js';
import type { ForwardMode } from '../../src/spec/spec.js';
import type { Clock, Timer } from '../../src/sys/clock.js';

/** Throws on the next call named `op` when armed. */
class Faults {
  private armed = new Map<string, Error>();
  fail(op: string, err: Error = Object.assign(new Error(`injected failure in ${op}`), { errno: 'EIO' })): void {
    this.armed.set(op, err);
  }
  check(op: string): void {
    const err = this.armed.get(op);
    if (err) {
      this.armed.delete(op);
      throw err;
    }
  }
}

export class FakeLinks extends Faults implements LinkBackend {
  links: Link[] = [
    { index: 1, name: 'lo', up: true, mtu: 65536 },
    { index: 2, name: 'up0', kind: 'veth', up: true, mtu: 1500, mac: '02:00:00:00:00:02' },
  ];
  addresses: LinkAddress[] = [{ family: 4, index: 2, address: '198.51.100.2', prefix: 24 }];
  routes: Route[] = [
    { family: 4, dst: '0.0.0.0/0', oif: 2 },
    { family: 4, dst: '198.51.100.0/24', oif: 2 },
  ];
  private next = 10;

  async listLinks() {
    this.check('listLinks');
    return this.links.map((l) => ({ ...l }));
  }
  async getLinkByName(name: string) {
    const l = this.links.find((x) => x.name === name);
    return l && { ...l };
  }
  async listAddresses() {
    return this.addresses.map((a) => ({ ...a }));
  }
  async listRoutes() {
    return this.routes.map((r) => ({ ...r }));
  }
  async createBridge(name: string, opts: { mtu?: number; mac?: string }) {
    this.check('createBridge');
    if (this.links.some((l) => l.name === name)) throw Object.assign(new Error(`create bridge ${name}: EEXIST`), { errno: 'EEXIST' });
    const link: Link = { index: this.next++, name, kind: 'bridge', up: false, mtu: opts.mtu ?? 1500, ...(opts.mac ? { mac: opts.mac } : {}) };
    this.links.push(link);
    return { ...link };
  }
  async deleteLink(index: number) {
    this.check('deleteLink');
    this.links = this.links.filter((l) => l.index !== index);
    this.addresses = this.addresses.filter((a) => a.index !== index);
    this.routes = this.routes.filter((r) => r.oif !== index);
  }
  async configureLink(index: number, change: LinkChange) {
    this.check('configureLink');
    const l = this.links.find((x) => x.index === index);
    if (!l) throw Object.assign(new Error('ENODEV'), { errno: 'ENODEV' });
    if (change.up !== undefined) l.up = change.up;
    if (change.mtu !== undefined) l.mtu = change.mtu;
  }
  async addAddress(index: number, address: string, prefix: number) {
    this.check('addAddress');
    if (this.addresses.some((a) => a.index === index && a.address === address)) throw Object.assign(new Error('EEXIST'), { errno: 'EEXIST' });
    const family = address.includes(':') ? 6 : 4;
    this.addresses.push({ family, index, address, prefix });
  }
  async delAddress(index: number, address: string) {
    this.check('delAddress');
    this.addresses = this.addresses.filter((a) => !(a.index === index && a.address === address));
  }
  /** A link made by someone else (an admin's bridge, a VPN). */
  addForeign(name: string, kind = 'bridge', mac = '02:aa:bb:cc:dd:ee'): Link {
    const link: Link = { index: this.next++, name, kind, up: true, mtu: 1500, mac };
    this.links.push(link);
    return link;
  }
}

export class FakeFirewall extends Faults implements FirewallBackend {
  table: TableState = emptyTable();
  applied: Transaction[] = [];
  async list() {
    return simulate(this.table, { nftables: [] });
  }
  async apply(tx: Transaction) {
    this.check('apply');
    this.table = simulate(this.table, tx);
    this.applied.push(tx);
  }
}

export class FakeSysctl extends Faults implements SysctlBackend {
  values = new Map<string, string>([['net/ipv4/ip_forward', '0']]);
  constructor(private readonly links: FakeLinks) {
    super();
  }
  async read(key: string) {
    const m = /^net\/ipv6\/conf\/([^/]+)\//.exec(key);
    if (m && m[1] !== 'all' && m[1] !== 'default' && !this.links.links.some((l) => l.name === m[1])) return undefined;
    return this.values.get(key) ?? (m ? '0' : undefined);
  }
  async write(key: string, value: string) {
    this.check('write');
    this.values.set(key, value);
  }
}

export class FakeDhcp extends Faults implements DhcpBackend {
  servers = new Map<string, DhcpConfig>();
  running() {
    return new Map(this.servers);
  }
  async start(config: DhcpConfig) {
    this.check('start');
    this.servers.set(config.network, config);
  }
  async stop(network: string) {
    this.servers.delete(network);
  }
}

/** A firewall beside vnet's (firewalld, Docker) that remembers which bridges it lets through. */
export class FakeHostFirewall extends Faults implements HostFirewall {
  readonly bridges = new Map<string, ForwardMode>();
  constructor(readonly name = 'fakewall') {
    super();
  }
  async bound() {
    return new Set(this.bridges.keys());
  }
  async bind(bridge: string, mode: ForwardMode) {
    this.check('bind');
    this.bridges.set(bridge, mode);
  }
  async unbind(bridge: string) {
    this.bridges.delete(bridge);
  }
}

export function fakeBackends() {
  const links = new FakeLinks();
  const b = { links, firewall: new FakeFirewall(), sysctl: new FakeSysctl(links), dhcp: new FakeDhcp(), hostFirewalls: [new FakeHostFirewall()] };
  return b satisfies Backends;
}

/** A clock that moves only by advance(); timers fire in order of their due time. */
export class FakeClock implements Clock {
  private t = 1_000_000;
  private timers: Array<{ due: number; fn: () => void; id: number }> = [];
  private ids = 0;
  now() {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): Timer {
    const id = ++this.ids;
    this.timers.push({ due: this.t + ms, fn, id });
    return { id } as Timer;
  }
  clearTimeout(timer: Timer | undefined) {
    const id = (timer as { id?: number } | undefined)?.id;
    this.timers = this.timers.filter((x) => x.id !== id);
  }
  /** Move time forward, firing due timers (and letting the promises they start settle). */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      this.timers.sort((a, b) => a.due - b.due);
      const next = this.timers[0];
      if (!next || next.due > end) break;
      this.timers.shift();
      this.t = next.due;
      next.fn();
      await settle();
    }
    this.t = end;
    await settle();
  }
  pending(): number {
    return this.timers.length;
  }
}

/** Let queued promise callbacks run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}
