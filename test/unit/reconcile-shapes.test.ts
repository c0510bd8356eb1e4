/**
 * The reconciler with fake backends for the shapes beyond NAT: a bridge vnet does not own
 * (forward = "bridge"), "route" and "open", taps that follow the bridge's MTU, and every kind of
 * subnet overlap the host can hold (v4 and v6, routes and addresses, wider and narrower).
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { contributors } from '../../src/desired/desired.js';
import { PlanError } from '../../src/reconcile/diff.js';
import { emptyJournal, journalFromJson, journalToJson } from '../../src/reconcile/journal.js';
import { Reconciler } from '../../src/reconcile/reconciler.js';
import { builtinDefault, parseDefinition } from '../../src/spec/parse.js';
import { Mutex, type Lock } from '../../src/sys/mutex.js';
import { fakeBackends } from '../support/fakes.js';

const log = pino({ level: 'silent' });
const one = (...names: string[]) => ({ names: new Set(names), sweep: false });
const def = (name: string, text: string) => parseDefinition(name, `${name}.toml`, text);

function setup() {
  const b = fakeBackends();
  const r = new Reconciler({ backends: b, contributors: contributors({ runtimeDir: '/run/vnet', stateDir: '/var/lib/vnet' }), log, journal: emptyJournal(), save: async () => undefined });
  const mutex = new Mutex();
  const run = <T>(fn: (lock: Lock) => Promise<T>) => mutex.run(fn);
  return { b, r, run };
}

describe('forward = "bridge": a bridge vnet neither makes nor deletes', () => {
  const lan = def('lan', 'bridge = "br0"\nforward = "bridge"\naddress = "192.0.2.1/24"\ndhcp-range = ["192.0.2.100", "192.0.2.200"]\n');
  const bare = def('bare', 'bridge = "br0"\nforward = "bridge"\n');

  it('refuses clearly when the bridge does not exist, or is no bridge', async () => {
    const { b, r, run } = setup();
    const err = await run((l) => r.converge(l, [{ spec: lan, level: 'up' }], one('lan'), 'rollback')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PlanError);
    expect((err as PlanError).code).toBe('ENODEV');
    expect((err as Error).message).toBe('network "lan": bridge br0 does not exist; forward = "bridge" uses a bridge vnet does not create (make it first, e.g. with NetworkManager)');
    b.links.addForeign('br0', 'veth');
    await expect(run((l) => r.converge(l, [{ spec: lan, level: 'up' }], one('lan'), 'rollback'))).rejects.toThrow(/interface br0 is not a bridge/);
    expect(b.links.links.filter((l) => l.kind === 'bridge')).toEqual([]);
  });

  it('adds the address it lacks and DHCP on it; down removes only that address and leaves the bridge as it was', async () => {
    const { b, r, run } = setup();
    const br = b.links.addForeign('br0');
    br.up = false; // its owner's business: vnet does not raise it
    b.links.addresses.push({ family: 4, index: br.index, address: '203.0.113.5', prefix: 24 }, { family: 6, index: br.index, address: 'fd00:99::5', prefix: 64 });
    await run((l) => r.converge(l, [{ spec: lan, level: 'up' }], one('lan'), 'rollback'));
    expect(b.links.addresses.filter((a) => a.index === br.index).map((a) => a.address)).toEqual(['203.0.113.5', 'fd00:99::5', '192.0.2.1']);
    expect(r.journalNow().addresses.get('br0')).toEqual(new Set(['192.0.2.1/24']));
    expect(b.dhcp.servers.get('lan')?.text).toMatch(/interface=br0\n[\s\S]*listen-address=192\.0\.2\.1\n[\s\S]*dhcp-range=192\.0\.2\.100,192\.0\.2\.200/);
    expect(b.firewall.table.exists).toBe(false); // no rules, like "open"
    expect(b.hostFirewalls[0]!.bridges.size).toBe(0); // its zone is its owner's
    expect(b.sysctl.values.get('net/ipv4/ip_forward')).toBe('0');
    expect(b.sysctl.values.has('net/ipv6/conf/br0/disable_ipv6')).toBe(false);
    expect(r.owned().has('br0')).toBe(false);
    await run((l) => r.converge(l, [{ spec: lan, level: 'down' }], one('lan'), 'best-effort'));
    expect(b.links.links.find((l) => l.name === 'br0')).toMatchObject({ index: br.index, up: false });
    expect(b.links.addresses.filter((a) => a.index === br.index).map((a) => a.address)).toEqual(['203.0.113.5', 'fd00:99::5']);
    expect(b.dhcp.servers.size).toBe(0);
    expect(r.journalNow().addresses.size).toBe(0);
  });

  it('an address the bridge already had is its owner\'s: used, and never removed', async () => {
    const { b, r, run } = setup();
    const br = b.links.addForeign('br0');
    b.links.addresses.push({ family: 4, index: br.index, address: '192.0.2.1', prefix: 24 });
    await run((l) => r.converge(l, [{ spec: lan, level: 'up' }], one('lan'), 'rollback'));
    expect(r.journalNow().addresses.size).toBe(0);
    expect(b.dhcp.servers.has('lan')).toBe(true);
    await run((l) => r.converge(l, [{ spec: lan, level: 'down' }], one('lan'), 'best-effort'));
    expect(b.links.addresses).toContainEqual({ family: 4, index: br.index, address: '192.0.2.1', prefix: 24 });
  });

  it('without an address or a range: nothing to do at all, and no dnsmasq', async () => {
    const { b, r, run } = setup();
    b.links.addForeign('br0');
    const { steps } = await run((l) => r.plan(l, [{ spec: bare, level: 'up' }], one('bare')));
    expect(steps).toEqual([]);
    const noRange = def('lan', 'bridge = "br0"\nforward = "bridge"\naddress = "192.0.2.1/24"\n');
    await run((l) => r.converge(l, [{ spec: noRange, level: 'up' }], one('lan'), 'rollback'));
    expect(b.dhcp.servers.size).toBe(0);
  });

  it('the record of an added address survives a restart, and a sweep after the definition went removes only that', async () => {
    const { b, r, run } = setup();
    const br = b.links.addForeign('br0');
    await run((l) => r.converge(l, [{ spec: lan, level: 'up' }], one('lan'), 'rollback'));
    b.links.addresses.push({ family: 4, index: br.index, address: '203.0.113.5', prefix: 24 });
    const saved = journalFromJson(JSON.parse(JSON.stringify(journalToJson(r.journalNow()))));
    const again = new Reconciler({ backends: b, contributors: contributors({ runtimeDir: '/run/vnet', stateDir: '/var/lib/vnet' }), log, journal: saved, save: async () => undefined });
    await run((l) => again.settle(l));
    await run((l) => again.converge(l, [], { names: new Set(), sweep: true }, 'best-effort'));
    expect(b.links.addresses.filter((a) => a.index === br.index).map((a) => a.address)).toEqual(['203.0.113.5']);
    expect(b.links.links.some((l) => l.name === 'br0')).toBe(true);
  });

  it('a write-ahead record of an address whose add failed (somebody else\'s) is dropped', async () => {
    const { b, r, run } = setup();
    b.links.addForeign('br0');
    b.links.fail('addAddress', Object.assign(new Error('EEXIST'), { errno: 'EEXIST' }));
    await expect(run((l) => r.converge(l, [{ spec: lan, level: 'up' }], one('lan'), 'rollback'))).rejects.toThrow(/add-address 192\.0\.2\.1\/24 on br0 failed/);
    expect(r.journalNow().addresses.size).toBe(0);
  });
});

describe('"route" and "open"', () => {
  const dmz = def('dmz', 'bridge = "vndmz0"\naddress = "10.40.0.1/24"\nforward = "route"\n');
  const open = def('lab', 'bridge = "vnlab0"\naddress = "10.41.0.1/24"\nforward = "open"\n');

  it('both route through the host (forwarding on); "open" adds no rule, "route" no NAT', async () => {
    const { b, r, run } = setup();
    await run((l) => r.converge(l, [{ spec: open, level: 'up' }], one('lab'), 'rollback'));
    expect(b.sysctl.values.get('net/ipv4/ip_forward')).toBe('1');
    expect(b.firewall.table.exists).toBe(false);
    expect(b.hostFirewalls[0]!.bridges.size).toBe(0);
    await run((l) => r.converge(l, [{ spec: open, level: 'up' }, { spec: dmz, level: 'up' }], one('dmz'), 'rollback'));
    expect([...b.firewall.table.chains.keys()].filter((c) => c.includes('-'))).toEqual(['to-vndmz0', 'from-vndmz0', 'in-vndmz0', 'guard-vndmz0']);
    await run((l) => r.converge(l, [{ spec: open, level: 'down' }, { spec: dmz, level: 'down' }], one('lab', 'dmz'), 'best-effort'));
    expect(b.sysctl.values.get('net/ipv4/ip_forward')).toBe('0');
  });
});

describe('mtu: the bridge and every tap on it', () => {
  it('a changed mtu reaches the bridge and the taps already on it, not its other ports', async () => {
    const { b, r, run } = setup();
    const v1 = def('office', 'bridge = "vnoff0"\naddress = "10.30.0.1/24"\nmtu = 1400\n');
    await run((l) => r.converge(l, [{ spec: v1, level: 'up' }], one('office'), 'rollback'));
    const br = b.links.links.find((l) => l.name === 'vnoff0')!;
    expect(br.mtu).toBe(1400);
    const tap = b.links.addForeign('tap0', 'tun');
    Object.assign(tap, { master: br.index, mtu: 1400 });
    const port = b.links.addForeign('vport', 'veth');
    Object.assign(port, { master: br.index, mtu: 1500 });
    const v2 = def('office', 'bridge = "vnoff0"\naddress = "10.30.0.1/24"\nmtu = 1300\n');
    await run((l) => r.converge(l, [{ spec: v2, level: 'up' }], one('office'), 'rollback'));
    expect(b.links.links.find((l) => l.name === 'vnoff0')!.mtu).toBe(1300);
    expect(b.links.links.find((l) => l.name === 'tap0')!.mtu).toBe(1300);
    expect(b.links.links.find((l) => l.name === 'vport')!.mtu).toBe(1500);
    expect((await run((l) => r.plan(l, [{ spec: v2, level: 'up' }], one('office')))).steps).toEqual([]);
  });
});

describe('subnet overlaps with the host, named by interface', () => {
  const lab = def('lab', 'bridge = "vnlab0"\naddress = "10.20.0.1/24"\n');
  const six = def('six', 'bridge = "vnsix0"\naddress = "10.60.0.1/24"\naddress6 = "fd00:60::1/64"\n');

  async function refusal(spec: typeof lab, add: (b: ReturnType<typeof setup>['b'], vpn: number) => void): Promise<string | undefined> {
    const { b, r, run } = setup();
    const vpn = b.links.addForeign('vpn0', 'tun').index;
    add(b, vpn);
    const err = await run((l) => r.converge(l, [{ spec, level: 'up' }], one(spec.name), 'rollback')).catch((e: unknown) => e);
    if (err === undefined) return undefined;
    expect(err).toBeInstanceOf(PlanError);
    expect((err as PlanError).code).toBe('EADDRINUSE');
    expect(b.links.links.some((l) => l.name === spec.bridge.name)).toBe(false);
    return (err as Error).message;
  }

  it.each([
    ['a wider IPv4 route', lab, { family: 4, dst: '10.0.0.0/8' }, 'subnet 10.20.0.0/24 is already in use by interface vpn0 (route 10.0.0.0/8)'],
    ['the same IPv4 route', lab, { family: 4, dst: '10.20.0.0/24' }, '(route 10.20.0.0/24)'],
    ['a narrower IPv4 route (one host)', lab, { family: 4, dst: '10.20.0.77/32' }, '(route 10.20.0.77/32)'],
    ['a wider IPv6 route', six, { family: 6, dst: 'fd00::/16' }, 'subnet fd00:60::/64 is already in use by interface vpn0 (route fd00::/16)'],
    ['a narrower IPv6 route', six, { family: 6, dst: 'fd00:60::8/125' }, '(route fd00:60::8/125)'],
  ] as const)('%s', async (_what, spec, route, message) => {
    const got = await refusal(spec, (b, vpn) => b.links.routes.push({ ...route, oif: vpn }));
    expect(got).toContain(message);
    expect(got).toContain(`choose another \`${route.family === 4 ? 'address' : 'address6'}\` in ${spec.name}.toml`);
  });

  it.each([
    ['an IPv4 address in a wider subnet', lab, { family: 4, address: '10.20.5.9', prefix: 16 }, '(address 10.20.5.9/16)'],
    ['an IPv4 host address inside it', lab, { family: 4, address: '10.20.0.200', prefix: 32 }, '(address 10.20.0.200/32)'],
    ['an IPv6 address', six, { family: 6, address: 'fd00:60::99', prefix: 48 }, '(address fd00:60::99/48)'],
  ] as const)('%s', async (_what, spec, address, message) => {
    expect(await refusal(spec, (b, vpn) => b.links.addresses.push({ ...address, index: vpn }))).toContain(message);
  });

  it('a multipath route (no single interface) is named as such', async () => {
    expect(await refusal(lab, (b) => b.links.routes.push({ family: 4, dst: '10.20.0.0/23' }))).toContain('in use by interface several interfaces (a multipath route) (route 10.20.0.0/23)');
  });

  it('default routes, other families and neighbouring subnets are no conflict', async () => {
    const got = await refusal(six, (b, vpn) => {
      b.links.routes.push({ family: 6, dst: '::/0', oif: vpn }, { family: 4, dst: '10.61.0.0/24', oif: vpn }, { family: 6, dst: 'fd00:61::/64', oif: vpn });
      b.links.addresses.push({ family: 6, index: vpn, address: 'fd00:59::1', prefix: 64 });
    });
    expect(got).toBeUndefined();
  });

  it('the network\'s own bridge and routes are no conflict (a restart with the network up)', async () => {
    const { b, r, run } = setup();
    await run((l) => r.converge(l, [{ spec: builtinDefault(), level: 'up' }], one('default'), 'rollback'));
    const br = b.links.links.find((l) => l.name === 'virbr0')!;
    b.links.routes.push({ family: 4, dst: '192.168.122.0/24', oif: br.index });
    expect((await run((l) => r.plan(l, [{ spec: builtinDefault(), level: 'up' }], one('default')))).steps).toEqual([]);
  });
});
