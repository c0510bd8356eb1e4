import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildRuleset, ruleCount, RULES_PER_NETWORK, RulesetError, TABLE, type NatNetwork } from '../../src/nat/ruleset.js';

const goldenDir = path.join(path.dirname(fileURLToPath(import.meta.url)), '__golden__');

const DEFAULT: NatNetwork = { bridge: 'virbr0', cidr: '192.168.122.0/24', address: '192.168.122.1' };
const OTHER: NatNetwork = { bridge: 'vnet1', cidr: '10.77.0.0/16', address: '10.77.0.1' };

/**
 * Compare with a stored golden file byte for byte. UPDATE_GOLDEN=1 rewrites the file and
 * fails: comparing a file with what was just written into it proves nothing, so an update
 * run never passes; review `git diff`, then run again without UPDATE_GOLDEN.
 */
function expectGolden(file: string, value: unknown): void {
  const text = `${JSON.stringify(value, null, 2)}\n`;
  const p = path.join(goldenDir, file);
  if (process.env.UPDATE_GOLDEN === '1') {
    const before = existsSync(p) ? readFileSync(p, 'utf8') : undefined;
    writeFileSync(p, text);
    throw new Error(
      `golden ${file} ${before === text ? 'rewritten unchanged' : 'updated'}; review \`git diff\` and rerun without UPDATE_GOLDEN`,
    );
  }
  expect(text).toBe(readFileSync(p, 'utf8'));
}

/** Every object key in a JSON value, and every string value with the key it sits under. */
function walk(v: unknown, keys: Set<string>, strings: Array<{ key: string; value: string }>, parentKey = ''): void {
  if (typeof v === 'string') strings.push({ key: parentKey, value: v });
  else if (Array.isArray(v)) for (const x of v) walk(x, keys, strings, parentKey);
  else if (v && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      keys.add(k);
      walk(x, keys, strings, k);
    }
  }
}

/** All keys the builder may emit: the nft JSON schema words it uses, nothing derived from input. */
const SCHEMA_KEYS = new Set([
  'nftables', 'add', 'delete', 'table', 'chain', 'rule', 'family', 'name', 'type', 'hook', 'prio', 'policy',
  'expr', 'match', 'op', 'left', 'right', 'meta', 'key', 'payload', 'protocol', 'field', 'ct', 'prefix', 'addr',
  'len', 'accept', 'reject', 'return', 'masquerade', 'port', 'range',
]);

describe('buildRuleset golden output', () => {
  it('zero networks: only add+delete of the vnet table (table gone, nothing else touched)', () => {
    const r = buildRuleset([]);
    expect(r).toEqual({ nftables: [{ add: { table: TABLE } }, { delete: { table: TABLE } }] });
    expectGolden('ruleset-0.json', r);
  });

  it('one network', () => {
    const r = buildRuleset([DEFAULT]);
    expect(ruleCount(r)).toBe(RULES_PER_NETWORK);
    expectGolden('ruleset-1.json', r);
  });

  it('two networks (given out of order: output is sorted by bridge)', () => {
    const r = buildRuleset([OTHER, DEFAULT]);
    expect(ruleCount(r)).toBe(2 * RULES_PER_NETWORK);
    expectGolden('ruleset-2.json', r);
  });
});

describe('buildRuleset structure', () => {
  it('starts with add table, delete table, add table, then the three accept-policy base chains', () => {
    const cmds = buildRuleset([DEFAULT]).nftables;
    expect(cmds.slice(0, 3)).toEqual([{ add: { table: TABLE } }, { delete: { table: TABLE } }, { add: { table: TABLE } }]);
    const chains = cmds.flatMap((c) => ('add' in c && 'chain' in c.add ? [c.add.chain] : []));
    expect(chains.map((c) => [c.name, c.type, c.hook, c.prio, c.policy])).toEqual([
      ['forward', 'filter', 'forward', 0, 'accept'],
      ['postrouting', 'nat', 'postrouting', 100, 'accept'],
      ['input', 'filter', 'input', 0, 'accept'],
    ]);
    // every command addresses vnet's own table and no other
    for (const c of cmds) {
      const body = Object.values(c)[0] as Record<string, { family: string; table?: string; name?: string }>;
      const obj = Object.values(body)[0]!;
      expect(obj.family).toBe('inet');
      expect(obj.table ?? obj.name).toBe('vnet');
    }
  });

  it('puts same-bridge guest traffic first and every into-bridge rule before any out-of-bridge accept', () => {
    const cmds = buildRuleset([DEFAULT, OTHER]).nftables;
    const fwd = cmds.flatMap((c) => ('add' in c && 'rule' in c.add && c.add.rule.chain === 'forward' ? [JSON.stringify(c.add.rule.expr)] : []));
    expect(fwd).toHaveLength(10);
    expect(fwd[0]).toContain('"iifname"');
    expect(fwd[0]).toContain('"oifname"');
    const lastInto = Math.max(...fwd.map((r, i) => (r.includes('"oifname"') && !r.includes('"iifname"') ? i : -1)));
    const firstOut = fwd.findIndex((r) => r.includes('"iifname"') && !r.includes('"oifname"'));
    expect(lastInto).toBeLessThan(firstOut);
  });

  it('is deterministic and independent of input order', () => {
    const a = JSON.stringify(buildRuleset([DEFAULT, OTHER]));
    expect(JSON.stringify(buildRuleset([DEFAULT, OTHER]))).toBe(a);
    expect(JSON.stringify(buildRuleset([OTHER, DEFAULT]))).toBe(a);
  });

  it('does not change with the input objects afterwards, nor change them', () => {
    const input = [{ ...DEFAULT }];
    const before = JSON.stringify(input);
    const r = JSON.stringify(buildRuleset(input));
    expect(JSON.stringify(input)).toBe(before);
    input[0]!.bridge = 'changed';
    expect(JSON.stringify(buildRuleset([DEFAULT]))).toBe(r);
  });
});

describe('names only ever travel as JSON values', () => {
  const hostile = ['x"; flush ruleset; #', 'a}b', 'c\\d', 'nat', 'rule', 'accept'];

  it('a hostile bridge name appears only, whole, as the right side of an iifname/oifname match', () => {
    const nets = hostile.map((bridge, i) => ({ bridge, cidr: `10.${i}.0.0/24`, address: `10.${i}.0.1` }));
    const r = buildRuleset(nets);
    const keys = new Set<string>();
    const strings: Array<{ key: string; value: string }> = [];
    walk(r, keys, strings);
    expect([...keys].filter((k) => !SCHEMA_KEYS.has(k))).toEqual([]);
    for (const s of strings) {
      if (hostile.includes(s.value) && !['nat', 'accept'].includes(s.value)) expect(s.key).toBe('right');
      for (const h of hostile.slice(0, 3)) if (s.value.includes(h)) expect(s.value).toBe(h);
    }
    const text = JSON.stringify(r);
    expect(JSON.parse(text)).toEqual(r);
  });

  it('property: for any bridge names, keys come only from the schema and names sit only under "right"', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.string({ minLength: 1, maxLength: 20 }), { minLength: 1, maxLength: 4 }), (names) => {
        const r = buildRuleset(names.map((bridge, i) => ({ bridge, cidr: `10.${i}.0.0/24`, address: `10.${i}.0.1` })));
        const keys = new Set<string>();
        const strings: Array<{ key: string; value: string }> = [];
        walk(r, keys, strings);
        for (const k of keys) expect(SCHEMA_KEYS.has(k)).toBe(true);
        const asRight = strings.filter((s) => s.key === 'right' && names.includes(s.value)).length;
        // uses of the name per network: forward 6 (cross 2, into 2, out of 2), postrouting 3 (masquerades), input 5
        expect(asRight).toBe(14 * names.length);
        expect(ruleCount(r)).toBe(RULES_PER_NETWORK * names.length);
      }),
      { numRuns: 200 },
    );
  });
});

describe('buildRuleset refuses inputs it cannot express', () => {
  const cases: Array<[string, NatNetwork, RegExp]> = [
    ['IPv6 cidr', { bridge: 'b6', cidr: 'fd00::/64', address: 'fd00::1' }, /bridge "b6": cidr "fd00::\/64" is not an IPv4 CIDR/],
    ['garbage cidr', { bridge: 'b1', cidr: '10.0.0.0/33', address: '10.0.0.1' }, /cidr "10.0.0.0\/33" is not an IPv4 CIDR/],
    ['host bits set', { bridge: 'b2', cidr: '10.0.0.5/24', address: '10.0.0.1' }, /cidr "10.0.0.5\/24" has host bits set \(network is 10.0.0.0\/24\)/],
    ['address outside', { bridge: 'b3', cidr: '10.0.0.0/24', address: '10.0.1.1' }, /address 10.0.1.1 is outside 10.0.0.0\/24/],
    ['address not IPv4', { bridge: 'b4', cidr: '10.0.0.0/24', address: 'x' }, /address "x" is not an IPv4 address/],
  ];
  for (const [what, net, msg] of cases) {
    it(what, () => {
      expect(() => buildRuleset([net])).toThrow(RulesetError);
      expect(() => buildRuleset([net])).toThrow(msg);
    });
  }

  it('the same bridge twice', () => {
    expect(() => buildRuleset([DEFAULT, { ...OTHER, bridge: 'virbr0' }])).toThrow(/bridge "virbr0" appears in more than one network/);
  });

  it('keeps the parse error as cause', () => {
    try {
      buildRuleset([{ bridge: 'b', cidr: 'nope', address: '1.2.3.4' }]);
      expect.unreachable();
    } catch (e) {
      expect((e as Error).name).toBe('RulesetError');
      expect((e as Error).cause).toBeInstanceOf(Error);
    }
  });
});

describe('ruleCount', () => {
  it('counts rule objects in `nft -j list` output and add-rule commands in a transaction', () => {
    const listed = {
      nftables: [
        { metainfo: { version: '1.0.6' } },
        { table: { family: 'inet', name: 'vnet', handle: 1 } },
        { chain: { family: 'inet', table: 'vnet', name: 'forward' } },
        { rule: { family: 'inet', table: 'vnet', chain: 'forward', expr: [] } },
        { rule: { family: 'inet', table: 'vnet', chain: 'forward', expr: [] } },
      ],
    };
    expect(ruleCount(listed)).toBe(2);
    expect(ruleCount(buildRuleset([]))).toBe(0);
    expect(ruleCount(undefined)).toBe(0);
    expect(ruleCount({ nftables: 'x' })).toBe(0);
  });
});
