/**
 * The reconciler with fake backends: desired → observed → diff → apply, with undo, journal and
 * recovery, without root or sleeps. The real backends are exercised in test/integration.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { contributors } from '../../src/desired/desired.js';
import { bridgeMac } from '../../src/desired/contributors/link.js';
import { rebuild } from '../../src/firewall/table.js';
import { emptyJournal, type Journal } from '../../src/reconcile/journal.js';
import { PlanError } from '../../src/reconcile/diff.js';
import { Reconciler } from '../../src/reconcile/reconciler.js';
import { builtinDefault, parseDefinition } from '../../src/spec/parse.js';
import { Mutex, type Lock } from '../../src/sys/mutex.js';
import { fakeBackends } from '../support/fakes.js';

const log = pino({ level: 'silent' });
const def = builtinDefault();
const lab = parseDefinition('lab', 'lab.toml', 'bridge = "vnlab0"\naddress = "10.20.0.1/24"\nforward = "isolated"\n');
const v6 = parseDefinition('six', 'six.toml', 'bridge = "vnsix0"\naddress = "10.60.0.1/24"\naddress6 = "fd00:1::1/64"\n');
const one = (...names: string[]) => ({ names: new Set(names), sweep: false });

function setup(journal: Journal = emptyJournal()) {
  const b = fakeBackends();
  const saved: Journal[] = [];
  const r = new Reconciler({ backends: b, contributors: contributors({ runtimeDir: '/run/vnet', stateDir: '/var/lib/vnet' }), log, journal, save: async (j) => void saved.push(j) });
  const mutex = new Mutex();
  const run = <T>(fn: (lock: Lock) => Promise<T>) => mutex.run(fn);
  return { b, r, saved, run };
}

describe('converge', () => {
  it('brings a NAT network up: bridge with vnet MAC, address, up, rules, forwarding, DHCP; and down leaves nothing', async () => {
    const { b, r, run } = setup();
    await run((l) => r.converge(l, [{ spec: def, level: 'up' }], one('default'), 'rollback'));
    const br = b.links.links.find((l) => l.name === 'virbr0')!;
    expect(br).toMatchObject({ kind: 'bridge', up: true, mac: bridgeMac('virbr0') });
    expect(b.links.addresses).toContainEqual({ family: 4, index: br.index, address: '192.168.122.1', prefix: 24 });
    expect(b.sysctl.values.get('net/ipv4/ip_forward')).toBe('1');
    expect(b.sysctl.values.get('net/ipv6/conf/virbr0/disable_ipv6')).toBe('1');
    expect([...b.firewall.table.chains.keys()]).toEqual(expect.arrayContaining(['forward', 'to-virbr0', 'nat-virbr0']));
    expect(b.dhcp.servers.get('default')?.text).toMatch(/interface=virbr0/);
    expect(r.owned().get('virbr0')).toBe(br.index);

    await run((l) => r.converge(l, [{ spec: def, level: 'down' }], one('default'), 'best-effort'));
    expect(b.links.links.map((l) => l.name)).toEqual(['lo', 'up0']);
    expect(b.firewall.table.exists).toBe(false);
    expect(b.dhcp.servers.size).toBe(0);
    expect(b.sysctl.values.get('net/ipv4/ip_forward')).toBe('0');
    expect(r.journalNow().sysctls.size).toBe(0);
    expect(r.owned().size).toBe(0);
  });

  it('a plan for one network reads no other network’s link sysctls, however many are up', async () => {
    const { b, r, run } = setup();
    const targets = [
      { spec: def, level: 'up' as const },
      { spec: v6, level: 'up' as const },
    ];
    await run((l) => r.converge(l, targets, one('default', 'six'), 'rollback'));
    const read: string[] = [];
    const orig = b.sysctl.read.bind(b.sysctl);
    b.sysctl.read = async (key: string) => (read.push(key), orig(key));
    await run((l) => r.plan(l, [...targets, { spec: lab, level: 'up' }], one('lab')));
    expect(read.filter((k) => /\/conf\/(virbr0|vnsix0)\//.test(k))).toEqual([]);
    expect(read).toContain('net/ipv6/conf/vnlab0/disable_ipv6');
  });

  it('is idempotent: a second converge plans nothing', async () => {
    const { r, run } = setup();
    const t = [{ spec: def, level: 'up' as const }];
    await run((l) => r.converge(l, t, one('default'), 'rollback'));
    const { steps } = await run((l) => r.plan(l, t, one('default')));
    expect(steps).toEqual([]);
  });

  it('a stub is the UP bridge alone; from the stub, up adds only address, rules, forwarding and DHCP', async () => {
    const { b, r, run } = setup();
    await run((l) => r.converge(l, [{ spec: def, level: 'stub' }], one('default'), 'rollback'));
    expect(b.links.links.find((l) => l.name === 'virbr0')?.up).toBe(true);
    expect(b.links.addresses.filter((a) => a.index > 2)).toEqual([]);
    expect(b.firewall.table.exists).toBe(false);
    const { steps } = await run((l) => r.plan(l, [{ spec: def, level: 'up' }], one('default')));
    expect(steps.map((s) => s.step.kind)).toEqual(['add-address', 'firewall', 'host-firewall', 'set-sysctl', 'start-dhcp']);
  });

  it('a failing step rolls back what the converge made, and the journal owns nothing', async () => {
    const { b, r, run } = setup();
    b.dhcp.fail('start');
    await expect(run((l) => r.converge(l, [{ spec: def, level: 'up' }], one('default'), 'rollback'))).rejects.toThrow(/start-dhcp for default failed: injected/);
    expect(b.links.links.map((l) => l.name)).toEqual(['lo', 'up0']);
    expect(b.firewall.table.chains.size).toBe(0);
    expect(b.sysctl.values.get('net/ipv4/ip_forward')).toBe('0');
    expect(r.owned().size).toBe(0);
    expect(r.journalNow().sysctls.size).toBe(0);
  });

  it('refuses an interface it did not create, and a subnet another interface uses (v4 route, v6 address), naming it', async () => {
    const { b, r, run } = setup();
    b.links.addForeign('virbr0');
    await expect(run((l) => r.converge(l, [{ spec: def, level: 'up' }], one('default'), 'rollback'))).rejects.toThrow(/virbr0 already exists and was not created by vnet/);
    const vpn = b.links.addForeign('tun0', 'tun');
    b.links.routes.push({ family: 4, dst: '10.20.0.0/16', oif: vpn.index });
    const err = await run((l) => r.converge(l, [{ spec: lab, level: 'up' }], one('lab'), 'rollback')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PlanError);
    expect((err as PlanError).code).toBe('EADDRINUSE');
    expect((err as Error).message).toMatch(/subnet 10\.20\.0\.0\/24 is already in use by interface tun0 \(route 10\.20\.0\.0\/16\)/);
    b.links.addresses.push({ family: 6, index: vpn.index, address: 'fd00:1::99', prefix: 48 });
    await expect(run((l) => r.converge(l, [{ spec: v6, level: 'up' }], one('six'), 'rollback'))).rejects.toThrow(/subnet fd00:1::\/64 is already in use by interface tun0 \(address fd00:1::99\/48\)/);
    expect(b.links.links.filter((l) => l.kind === 'bridge').map((l) => l.name)).toEqual(['virbr0']);
  });

  it('an isolated network: rules without NAT, no forwarding; an IPv6 address on the bridge keeps IPv6 on', async () => {
    const { b, r, run } = setup();
    await run((l) => r.converge(l, [{ spec: lab, level: 'up' }, { spec: v6, level: 'up' }], one('lab', 'six'), 'rollback'));
    expect(b.firewall.table.chains.has('nat-vnlab0')).toBe(false);
    expect(b.firewall.table.chains.get('from-vnlab0')?.rules).toHaveLength(1);
    const six = b.links.links.find((l) => l.name === 'vnsix0')!;
    expect(b.links.addresses.filter((a) => a.index === six.index).map((a) => `${a.address}/${a.prefix}`)).toEqual(['10.60.0.1/24', 'fd00:1::1/64']);
    expect(b.sysctl.values.has('net/ipv6/conf/vnsix0/disable_ipv6')).toBe(false);
    expect(b.sysctl.values.get('net/ipv6/conf/vnlab0/disable_ipv6')).toBe('1');
    // only the NAT network needs forwarding: with it down, vnet puts the old value back
    await run((l) => r.converge(l, [{ spec: lab, level: 'up' }, { spec: v6, level: 'down' }], one('six'), 'best-effort'));
    expect(b.sysctl.values.get('net/ipv4/ip_forward')).toBe('0');
  });

  it('a change to one network touches only its own chains and entries', async () => {
    const { b, r, run } = setup();
    await run((l) => r.converge(l, [{ spec: def, level: 'up' }], one('default'), 'rollback'));
    const n = b.firewall.applied.length;
    await run((l) => r.converge(l, [{ spec: def, level: 'up' }, { spec: lab, level: 'up' }], one('lab'), 'rollback'));
    const txs = b.firewall.applied.slice(n);
    expect(txs).toHaveLength(1);
    expect(JSON.stringify(txs[0])).not.toMatch(/virbr0/);
  });

  it('repairs by content: an edited rule of one network is replaced, the others untouched', async () => {
    const { b, r, run } = setup();
    const t = [{ spec: def, level: 'up' as const }, { spec: lab, level: 'up' as const }];
    await run((l) => r.converge(l, t, one('default', 'lab'), 'rollback'));
    b.firewall.table.chains.get('nat-virbr0')!.rules[2] = '[{"masquerade":null}]';
    expect(await run((l) => r.firewallIntact(l, t))).toBe(false);
    const n = b.firewall.applied.length;
    await run((l) => r.converge(l, t, { names: new Set(['default', 'lab']), sweep: true }, 'best-effort'));
    expect(b.firewall.applied.slice(n).map((tx) => JSON.stringify(tx).includes('vnlab0'))).toEqual([false]);
    expect(await run((l) => r.firewallIntact(l, t))).toBe(true);
  });
});

describe('host firewalls beside vnet\'s table', () => {
  it('let an up network through, stop when it goes down, and are bound again after they lost it; "open" asks nothing', async () => {
    const { b, r, run } = setup();
    const wall = b.hostFirewalls[0]!;
    await run((l) => r.converge(l, [{ spec: def, level: 'up' }, { spec: lab, level: 'up' }], one('default', 'lab'), 'rollback'));
    expect([...wall.bridges]).toEqual([['virbr0', 'nat'], ['vnlab0', 'isolated']]);
    wall.bridges.clear(); // it reloaded and forgot its runtime bindings
    await run((l) => r.converge(l, [{ spec: def, level: 'up' }, { spec: lab, level: 'up' }], { names: new Set(['default', 'lab']), sweep: true }, 'best-effort'));
    expect([...wall.bridges.keys()]).toEqual(['virbr0', 'vnlab0']);
    await run((l) => r.converge(l, [{ spec: def, level: 'down' }, { spec: lab, level: 'up' }], one('default'), 'best-effort'));
    expect([...wall.bridges.keys()]).toEqual(['vnlab0']);
    const open = { ...def, forward: { mode: 'open' as const } };
    await run((l) => r.converge(l, [{ spec: open, level: 'up' }, { spec: lab, level: 'up' }], one('default'), 'rollback'));
    expect([...wall.bridges.keys()]).toEqual(['vnlab0']);
  });

  it('a binding that fails rolls the bring-up back', async () => {
    const { b, r, run } = setup();
    b.hostFirewalls[0]!.fail('bind');
    await expect(run((l) => r.converge(l, [{ spec: def, level: 'up' }], one('default'), 'rollback'))).rejects.toThrow(/fakewall: let virbr0 through failed/);
    expect(b.links.links.some((l) => l.name === 'virbr0')).toBe(false);
    expect(b.firewall.table.exists).toBe(false);
  });
});

describe('recovery is the same diff', () => {
  it('a bridge whose creation was under way is adopted only with vnet\'s MAC; an admin\'s is never adopted or deleted', async () => {
    const journal: Journal = { ...emptyJournal(), pending: new Set(['virbr0', 'vnlab0']) };
    const { b, r, run } = setup(journal);
    const ours = b.links.addForeign('virbr0', 'bridge', bridgeMac('virbr0'));
    const admins = b.links.addForeign('vnlab0', 'bridge', '02:11:22:33:44:55');
    await run((l) => r.settle(l));
    expect(r.owned().get('virbr0')).toBe(ours.index);
    expect(r.owned().has('vnlab0')).toBe(false);
    await run((l) => r.converge(l, [], { names: new Set(), sweep: true }, 'best-effort'));
    expect(b.links.links.some((l) => l.index === ours.index)).toBe(false); // ours, wanted by nothing: swept
    expect(b.links.links.some((l) => l.index === admins.index)).toBe(true);
    await expect(run((l) => r.converge(l, [{ spec: lab, level: 'up' }], one('lab'), 'rollback'))).rejects.toThrow(/vnlab0 already exists and was not created by vnet/);
  });

  it('a table in another format (an older vnet) is rebuilt in one transaction', async () => {
    const { b, r, run } = setup();
    await b.firewall.apply({ nftables: [{ add: { table: { family: 'inet', name: 'vnet' } } }, { add: { chain: { family: 'inet', table: 'vnet', name: 'forward', type: 'filter', hook: 'forward', prio: 0, policy: 'accept' } } }] });
    const n = b.firewall.applied.length;
    await run((l) => r.converge(l, [{ spec: def, level: 'up' }, { spec: lab, level: 'up' }], one('default'), 'rollback'));
    const txs = b.firewall.applied.slice(n);
    expect(txs).toHaveLength(1);
    expect(txs[0]!.nftables.slice(0, 2)).toEqual(rebuild([]).nftables);
    expect(JSON.stringify(txs[0])).toMatch(/"delete":\{"table"/);
    expect(await run((l) => r.firewallIntact(l, [{ spec: def, level: 'up' }, { spec: lab, level: 'up' }]))).toBe(true);
  });

  it('sweep removes rules and bridges no network accounts for', async () => {
    const { b, r, run } = setup();
    await run((l) => r.converge(l, [{ spec: def, level: 'up' }, { spec: lab, level: 'up' }], one('default', 'lab'), 'rollback'));
    // lab's definition was deleted while vnetd was away
    await run((l) => r.converge(l, [{ spec: def, level: 'up' }], { names: new Set(['default']), sweep: true }, 'best-effort'));
    expect([...b.firewall.table.chains.keys()].some((c) => c.includes('vnlab0'))).toBe(false);
    expect(b.links.links.some((l) => l.name === 'vnlab0')).toBe(false);
    expect(b.links.links.some((l) => l.name === 'virbr0')).toBe(true);
  });
});
