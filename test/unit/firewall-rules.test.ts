/**
 * vnet's table as data: each forward mode's chains, the dispatch by verdict maps, transactions
 * that touch one network only, and names that only ever travel as JSON values. The real nft
 * reading back what this writes is test/integration/firewall-table.test.ts.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { chainsOf, firewallPart } from '../../src/firewall/rules.js';
import { baseIntact, changePart, emptyTable, partIntact, rebuild, simulate, strays } from '../../src/firewall/table.js';
import { builtinDefault, parseDefinition } from '../../src/spec/parse.js';
import type { NetworkSpec } from '../../src/spec/spec.js';

const goldenDir = path.join(import.meta.dirname, '__golden__');
const nat = builtinDefault();
const iso = parseDefinition('lab', 'lab.toml', 'bridge = "vnlab0"\naddress = "10.20.0.1/24"\nforward = "isolated"\n');
const routed = parseDefinition('dmz', 'dmz.toml', 'bridge = "vndmz0"\naddress = "10.40.0.1/24"\naddress6 = "fd00:40::1/64"\nforward = "route"\n');
const snat = parseDefinition(
  'office',
  'office.toml',
  'bridge = "vnoff0"\naddress = "10.30.0.1/24"\nnat-interface = "up0"\nnat-address = "198.51.100.10-198.51.100.20"\nnat-ports = "20000-29999"\n',
);

/**
 * Compare with a stored golden file byte for byte. UPDATE_GOLDEN=1 rewrites the file and FAILS,
 * so an update run never passes by comparing a file with itself: review `git diff`, then rerun.
 */
function expectGolden(file: string, value: unknown): void {
  const text = `${JSON.stringify(value, null, 2)}\n`;
  const p = path.join(goldenDir, file);
  if (process.env.UPDATE_GOLDEN === '1') {
    writeFileSync(p, text);
    throw new Error(`golden ${file} rewritten: review \`git diff ${path.relative(process.cwd(), p)}\` and rerun without UPDATE_GOLDEN`);
  }
  expect(text).toBe(readFileSync(p, 'utf8'));
}

function rulesOf(spec: NetworkSpec, role: string): string[] {
  const part = firewallPart(spec)!;
  return part.chains.find((c) => c.name === `${role}-${spec.bridge.name}`)!.rules.map((r) => JSON.stringify(r));
}

describe('what each forward mode holds', () => {
  it('golden: the whole table for a NAT and an isolated network', () => {
    expectGolden('table-nat-isolated.json', rebuild([firewallPart(nat)!, firewallPart(iso)!]));
  });

  it('NAT: replies only into the bridge, own subnet only out of it, masquerade to unprivileged ports, never multicast', () => {
    const to = rulesOf(nat, 'to');
    expect(to).toHaveLength(3);
    expect(to[1]).toContain('"established","related"');
    expect(to[2]).toBe('[{"reject":{"type":"icmpx","expr":"port-unreachable"}}]');
    expect(rulesOf(nat, 'from')[0]).toContain('"saddr"}},"right":{"prefix":{"addr":"192.168.122.0","len":24}}');
    const masq = rulesOf(nat, 'nat');
    expect(masq[0]).toContain('224.0.0.0');
    expect(masq.filter((r) => r.includes('"range":[1024,65535]'))).toHaveLength(2);
    expect(masq.filter((r) => r.includes('"udp"') && r.includes('[1024,65535]'))).toHaveLength(1);
  });

  it('isolated: guests among themselves and the host services, nothing forwarded, no NAT', () => {
    expect(rulesOf(iso, 'to')).toEqual(['[{"match":{"op":"==","left":{"meta":{"key":"iifname"}},"right":"vnlab0"}},{"accept":null}]', '[{"reject":{"type":"icmpx","expr":"port-unreachable"}}]']);
    expect(rulesOf(iso, 'from')).toEqual(['[{"reject":{"type":"icmpx","expr":"port-unreachable"}}]']);
    expect(firewallPart(iso)!.chains.some((c) => c.name === 'nat-vnlab0')).toBe(false);
    expect(rulesOf(iso, 'in').join()).toContain('67');
  });

  it('golden: the whole table for a routed network and a NAT network with libvirt\'s NAT options', () => {
    expectGolden('table-route-natopts.json', rebuild([firewallPart(routed)!, firewallPart(snat)!]));
  });

  it('route: both ways for every subnet of the network, v4 and v6, no replies-only, no NAT', () => {
    expect(rulesOf(routed, 'to')).toEqual([
      '[{"match":{"op":"==","left":{"meta":{"key":"iifname"}},"right":"vndmz0"}},{"accept":null}]',
      '[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":{"prefix":{"addr":"10.40.0.0","len":24}}}},{"accept":null}]',
      '[{"match":{"op":"==","left":{"payload":{"protocol":"ip6","field":"daddr"}},"right":{"prefix":{"addr":"fd00:40::","len":64}}}},{"accept":null}]',
      '[{"reject":{"type":"icmpx","expr":"port-unreachable"}}]',
    ]);
    expect(rulesOf(routed, 'from')).toEqual([
      '[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":{"prefix":{"addr":"10.40.0.0","len":24}}}},{"accept":null}]',
      '[{"match":{"op":"==","left":{"payload":{"protocol":"ip6","field":"saddr"}},"right":{"prefix":{"addr":"fd00:40::","len":64}}}},{"accept":null}]',
      '[{"reject":{"type":"icmpx","expr":"port-unreachable"}}]',
    ]);
    expect(firewallPart(routed)!.chains.map((c) => c.name)).not.toContain('nat-vndmz0');
    expect(firewallPart(routed)!.elements.map((e) => e.map)).toEqual(['to_bridge', 'from_bridge', 'in_bridge', 'guard4', 'guard6']);
  });

  it('NAT options: forwarding and translation only through nat-interface, SNAT to nat-address over nat-ports', () => {
    expect(rulesOf(snat, 'to')[1]).toMatch(/^\[\{"match":\{"op":"==","left":\{"meta":\{"key":"iifname"\}\},"right":"up0"\}\},.*"established","related".*accept/);
    expect(rulesOf(snat, 'from')[0]).toMatch(/"saddr".*"oifname"\}\},"right":"up0".*accept/);
    const n = rulesOf(snat, 'nat');
    expect(n[2]).toBe(
      '[{"match":{"op":"!=","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":{"prefix":{"addr":"10.30.0.0","len":24}}}},' +
        '{"match":{"op":"==","left":{"meta":{"key":"oifname"}},"right":"up0"}},{"match":{"op":"==","left":{"meta":{"key":"l4proto"}},"right":"tcp"}},' +
        '{"snat":{"family":"ip","addr":{"range":["198.51.100.10","198.51.100.20"]},"port":{"range":[20000,29999]}}}]',
    );
    expect(n[4]).toContain('{"snat":{"family":"ip","addr":{"range":["198.51.100.10","198.51.100.20"]}}}]');
    expect(n.join()).not.toContain('masquerade');
    // one address: nft lists it as a plain string, so vnet writes it so
    const one = parseDefinition('o', 'o.toml', 'bridge = "vno1"\naddress = "10.31.0.1/24"\nnat-address = "198.51.100.9"\nnat-ports = "5000-5000"\n');
    expect(rulesOf(one, 'nat')[3]).toContain('{"snat":{"family":"ip","addr":"198.51.100.9","port":{"range":[5000,5000]}}}');
    // ports alone: masquerade over them
    const ports = parseDefinition('p', 'p.toml', 'bridge = "vnp1"\naddress = "10.32.0.1/24"\nnat-ports = "40000-50000"\n');
    expect(rulesOf(ports, 'nat').filter((r) => r.includes('{"masquerade":{"port":{"range":[40000,50000]}}}'))).toHaveLength(2);
  });

  it('"open" and "bridge" networks have no part in the table at all', () => {
    expect(firewallPart({ ...nat, forward: { mode: 'open' } })).toBeUndefined();
    expect(firewallPart(parseDefinition('b', 'b.toml', 'bridge = "br0"\nforward = "bridge"\naddress = "192.0.2.1/24"\n'))).toBeUndefined();
  });

  it('every chain of a network is entered through one map entry, keyed by its bridge, address or subnet', () => {
    const p = firewallPart(nat)!;
    expect(p.elements).toEqual([
      { map: 'to_bridge', key: 'virbr0', target: 'to-virbr0' },
      { map: 'from_bridge', key: 'virbr0', target: 'from-virbr0' },
      { map: 'in_bridge', key: 'virbr0', target: 'in-virbr0' },
      { map: 'guard4', key: '192.168.122.1', target: 'guard-virbr0' },
      { map: 'nat4', key: { prefix: { addr: '192.168.122.0', len: 24 } }, target: 'nat-virbr0' },
    ]);
    // every chain it has is one chainsOf() names (so removing the network removes it); nat6 only
    // with nat6 = true, dnat-BR only with port forwards (test/unit/port-forwards.test.ts)
    expect(p.chains.map((c) => c.name)).toEqual(chainsOf('virbr0').filter((c) => c !== 'nat6-virbr0' && c !== 'dnat-virbr0'));
  });
});

describe('IPv6 per forward mode', () => {
  const v6nat = (extra = '') => parseDefinition('six', 'six.toml', `bridge = "vnsix0"\naddress = "10.60.0.1/24"\naddress6 = ["fd00:60::1/64", "fd00:61::1/64"]\n${extra}`);
  const d6 = (a: string) => `{"payload":{"protocol":"ip6","field":"${a}"}}`;

  it('NAT without nat6: the IPv6 subnets are routed both ways (as libvirt does), never masqueraded', () => {
    const s = v6nat();
    const to = rulesOf(s, 'to');
    expect(to).toContain(`[{"match":{"op":"==","left":${d6('daddr')},"right":{"prefix":{"addr":"fd00:61::","len":64}}}},{"accept":null}]`);
    expect(rulesOf(s, 'from')).toContain(`[{"match":{"op":"==","left":${d6('saddr')},"right":{"prefix":{"addr":"fd00:60::","len":64}}}},{"accept":null}]`);
    expect(firewallPart(s)!.chains.map((c) => c.name)).not.toContain('nat6-vnsix0');
    expect(firewallPart(s)!.elements.filter((e) => e.map === 'nat6')).toEqual([]);
  });

  it('NAT with nat6: replies only into the bridge, masquerade of every subnet except to each other and to multicast', () => {
    const s = v6nat('nat6 = true\nnat-interface = "up0"\n');
    const to = rulesOf(s, 'to');
    expect(to[2]).toBe(
      `[{"match":{"op":"==","left":{"meta":{"key":"iifname"}},"right":"up0"}},{"match":{"op":"==","left":${d6('daddr')},"right":{"prefix":{"addr":"fd00:60::","len":64}}}},` +
        '{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":["established","related"]}},{"accept":null}]',
    );
    expect(rulesOf(s, 'from')[1]).toBe(
      `[{"match":{"op":"==","left":${d6('saddr')},"right":{"prefix":{"addr":"fd00:60::","len":64}}}},{"match":{"op":"==","left":{"meta":{"key":"oifname"}},"right":"up0"}},{"accept":null}]`,
    );
    const n6 = rulesOf(s, 'nat6');
    expect(n6.slice(0, 3).map((r) => JSON.parse(r)[0].match.right.prefix.addr)).toEqual(['ff00::', 'fd00:60::', 'fd00:61::']);
    expect(n6.slice(0, 3).every((r) => r.endsWith('{"return":null}]'))).toBe(true);
    expect(n6[3]).toBe('[{"match":{"op":"==","left":{"meta":{"key":"oifname"}},"right":"up0"}},{"match":{"op":"==","left":{"meta":{"key":"l4proto"}},"right":"tcp"}},{"masquerade":{"port":{"range":[1024,65535]}}}]');
    expect(n6[5]).toBe('[{"match":{"op":"==","left":{"meta":{"key":"oifname"}},"right":"up0"}},{"masquerade":null}]');
    expect(firewallPart(s)!.elements.filter((e) => e.map === 'nat6' || e.map === 'guard6')).toEqual([
      { map: 'guard6', key: 'fd00:60::1', target: 'guard-vnsix0' },
      { map: 'guard6', key: 'fd00:61::1', target: 'guard-vnsix0' },
      { map: 'nat6', key: { prefix: { addr: 'fd00:60::', len: 64 } }, target: 'nat6-vnsix0' },
      { map: 'nat6', key: { prefix: { addr: 'fd00:61::', len: 64 } }, target: 'nat6-vnsix0' },
    ]);
  });

  it('the host answers DHCPv6 and ICMPv6 (RS, neighbour discovery) on the bridge only when it has IPv6', () => {
    for (const s of [v6nat(), parseDefinition('i6', 'i6.toml', 'bridge = "vni6"\naddress = "10.61.0.1/24"\naddress6 = "fd00:62::1/64"\nforward = "isolated"\n')]) {
      const inRules = rulesOf(s, 'in');
      expect(inRules).toContain('[{"match":{"op":"==","left":{"payload":{"protocol":"udp","field":"dport"}},"right":547}},{"accept":null}]');
      expect(inRules).toContain('[{"match":{"op":"==","left":{"meta":{"key":"l4proto"}},"right":"ipv6-icmp"}},{"accept":null}]');
    }
    expect(rulesOf(nat, 'in').join()).not.toContain('547');
  });

  it('isolated with IPv6: still nothing forwarded, whatever the family', () => {
    const s = parseDefinition('i6', 'i6.toml', 'bridge = "vni6"\naddress = "10.61.0.1/24"\naddress6 = "fd00:62::1/64"\nforward = "isolated"\n');
    expect(rulesOf(s, 'from')).toEqual(['[{"reject":{"type":"icmpx","expr":"port-unreachable"}}]']);
    expect(rulesOf(s, 'to')).toHaveLength(2);
  });
});

describe('transactions', () => {
  it('rebuild creates chains before maps (nft 1.0.6 refuses an interval element whose chain comes later)', () => {
    const kinds = rebuild([firewallPart(nat)!]).nftables.map((c) => Object.keys(Object.values(c)[0]!)[0]);
    expect(kinds.lastIndexOf('chain')).toBeLessThan(kinds.indexOf('map'));
    expect(kinds.lastIndexOf('map')).toBeLessThan(kinds.indexOf('rule'));
  });

  it('adding, replacing or removing one network never names another', () => {
    const s = simulate(emptyTable(), rebuild([firewallPart(nat)!]));
    const add = changePart(s, chainsOf('vnlab0'), firewallPart(iso)!);
    expect(JSON.stringify(add)).not.toContain('virbr0');
    const both = simulate(s, add);
    expect(partIntact(both, firewallPart(nat)!) && partIntact(both, firewallPart(iso)!)).toBe(true);
    const rm = changePart(both, chainsOf('vnlab0'));
    expect(JSON.stringify(rm)).not.toContain('virbr0');
    expect(simulate(both, rm).chains.has('to-vnlab0')).toBe(false);
  });

  it('an address change removes the old map entries with the chains they jump to', () => {
    const s = simulate(emptyTable(), rebuild([firewallPart(nat)!]));
    const moved = { ...nat, addresses: [{ family: 4 as const, address: '192.168.123.1', prefix: 24, network: '192.168.123.0', cidr: '192.168.123.0/24' }] };
    const after = simulate(s, changePart(s, chainsOf('virbr0'), firewallPart(moved)!));
    expect(strays(after, [firewallPart(moved)!])).toEqual({ chains: [], elements: [] });
    expect([...after.maps.get('guard4')!.elems.keys()]).toEqual(['"192.168.123.1"']);
  });

  it('a base chain changed by someone else makes the base not intact', () => {
    const s = simulate(emptyTable(), rebuild([firewallPart(nat)!]));
    expect(baseIntact(s)).toBe(true);
    s.chains.get('forward')!.rules.pop();
    expect(baseIntact(s)).toBe(false);
  });
});

describe('names only ever travel as JSON values', () => {
  /** Every object key in a JSON value. */
  function keys(v: unknown, out = new Set<string>()): Set<string> {
    if (Array.isArray(v)) for (const x of v) keys(x, out);
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) (out.add(k), keys(x, out));
    return out;
  }
  const SCHEMA = new Set(['nftables', 'add', 'delete', 'flush', 'table', 'chain', 'map', 'rule', 'element', 'family', 'name', 'table', 'type', 'hook', 'prio', 'policy', 'flags', 'elem', 'expr', 'match', 'op', 'left', 'right', 'meta', 'key', 'payload', 'protocol', 'field', 'ct', 'prefix', 'addr', 'len', 'accept', 'reject', 'expr', 'return', 'masquerade', 'snat', 'port', 'range', 'vmap', 'data', 'jump', 'target', 'fib', 'result']);

  it('property: for any bridge name, the transaction uses only schema keys and the name only whole', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 20 }), (bridge) => {
        const spec: NetworkSpec = { ...nat, bridge: { name: bridge, managed: true } };
        const tx = rebuild([firewallPart(spec)!]);
        for (const k of keys(tx)) expect(SCHEMA.has(k), k).toBe(true);
        const text = JSON.stringify(tx);
        expect(JSON.parse(text)).toEqual(tx);
        // what the name adds is the name itself or a chain name made from it, never syntax
        const strings = (v: unknown) => {
          const out = new Set<string>();
          JSON.stringify(v, (_k, x) => (typeof x === 'string' && out.add(x), x));
          return out;
        };
        const plain = strings(rebuild([firewallPart({ ...nat, bridge: { name: '\u0001', managed: true } })!]));
        for (const s of strings(tx)) if (!plain.has(s)) expect([bridge, ...chainsOf(bridge)]).toContain(s);
      }),
      { numRuns: 200 },
    );
  });
});
