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

  it('every chain of a network is entered through one map entry, keyed by its bridge, address or subnet', () => {
    const p = firewallPart(nat)!;
    expect(p.elements).toEqual([
      { map: 'to_bridge', key: 'virbr0', target: 'to-virbr0' },
      { map: 'from_bridge', key: 'virbr0', target: 'from-virbr0' },
      { map: 'in_bridge', key: 'virbr0', target: 'in-virbr0' },
      { map: 'guard4', key: '192.168.122.1', target: 'guard-virbr0' },
      { map: 'nat4', key: { prefix: { addr: '192.168.122.0', len: 24 } }, target: 'nat-virbr0' },
    ]);
    expect(p.chains.map((c) => c.name)).toEqual(chainsOf('virbr0'));
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
  const SCHEMA = new Set(['nftables', 'add', 'delete', 'flush', 'table', 'chain', 'map', 'rule', 'element', 'family', 'name', 'table', 'type', 'hook', 'prio', 'policy', 'flags', 'elem', 'expr', 'match', 'op', 'left', 'right', 'meta', 'key', 'payload', 'protocol', 'field', 'ct', 'prefix', 'addr', 'len', 'accept', 'reject', 'expr', 'return', 'masquerade', 'port', 'range', 'vmap', 'data', 'jump', 'target']);

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
