/**
 * Property tests of the parsers that read untrusted or admin-written text (threats.md items 1, 3, 6):
 * network definitions (TOML), bridge.conf and its include graph, and socket frames and requests.
 * They complement definition.test.ts, acl.test.ts and protocol.test.ts rather than repeat them;
 * the byte-level fuzz of a live vnetd is in test/integration/adversarial-socket.test.ts.
 */
import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { encodeFrame, FrameReader, parseRequest, ProtocolError } from '../../src/api/protocol.js';
import { compare, contains, parseIfAddress, subnetOf } from '../../src/net/ip.js';
import { DEFINITION_KEYS, DefinitionError, parseDefinition } from '../../src/spec/parse.js';
import { ifnameProblem } from '../../src/config/names.js';
import { evaluateAcl, parseAcl, type AclLoader } from '../../src/qemu/acl.js';

const FILE = '/etc/vnet/networks/fuzz.toml';

/** Names every plain object answers to: a key table looked up with [] must not take them for keys. */
const PROTO_NAMES = Object.getOwnPropertyNames(Object.prototype);

// ---------- network definitions ----------

const ifnameLike = fc.oneof(
  fc.constantFrom('virbr0', 'vnbr1', 'b', 'a'.repeat(15), 'a'.repeat(16), '', '.', '..', 'a/b', 'a:b', 'a b', 'tap%d', '-x', 'all', 'é', 'br\u0000', 'a"b', 'a;b}', 'a\\b'),
  fc.string({ maxLength: 20 }),
  fc.stringMatching(/^[A-Za-z0-9_.-]{1,17}$/),
);
const octet = fc.integer({ min: 0, max: 255 });
const ipv4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join('.'));
const cidrLike = fc.oneof(
  fc.tuple(ipv4, fc.integer({ min: 0, max: 33 })).map(([a, p]) => `${a}/${p}`),
  fc.constantFrom('10.10.0.1/24', '10.10.0.0/24', '10.10.0.255/24', '0.0.0.0/0', '127.0.0.1/8', '10.0.0.300/24', '10.1/16', '010.1.2.3/24', '10.1.2.3/24/1', '::1/64', ' 10.1.2.3/24', '10.1.2.3/ 24'),
  fc.string({ maxLength: 20 }),
);
const anyValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.integer({ min: -3, max: 70000 }),
  fc.constantFrom(true, false, 1.5, -0, 1e300),
  fc.array(fc.oneof(fc.string({ maxLength: 8 }), ipv4, fc.integer()), { maxLength: 3 }),
);
const keyValue: fc.Arbitrary<[string, unknown]> = fc.oneof(
  fc.tuple(fc.constant('bridge'), fc.oneof(ifnameLike, anyValue)),
  fc.tuple(fc.constant('address'), fc.oneof(cidrLike, anyValue)),
  fc.tuple(fc.constant('dhcp-range'), fc.oneof(fc.tuple(ipv4, ipv4), fc.tuple(fc.constant('10.10.0.10'), fc.constant('10.10.0.99')), anyValue)),
  fc.tuple(fc.constantFrom(...DEFINITION_KEYS), anyValue),
  fc.tuple(fc.constantFrom(...PROTO_NAMES, 'prototype', 'KEYS', 'Bridge', 'bridge '), anyValue),
  fc.tuple(fc.string({ maxLength: 10 }), anyValue),
);

/** TOML text of a table of scalars and flat arrays (keys quoted, so any key name is expressible). */
function toml(entries: Array<[string, unknown]>): string {
  const value = (v: unknown): string => {
    if (Array.isArray(v)) return `[${v.map(value).join(', ')}]`;
    if (typeof v === 'number') return Number.isInteger(v) ? String(v) : Number.isFinite(v) ? v.toExponential() : 'nan';
    return JSON.stringify(v);
  };
  return entries.map(([k, v]) => `${JSON.stringify(k)} = ${value(v)}`).join('\n') + '\n';
}

/** Parse, returning the definition or the DefinitionError; any other throw fails the property. */
function parse(text: string) {
  try {
    return { def: parseDefinition('fuzz', FILE, text) };
  } catch (err) {
    if (!(err instanceof DefinitionError)) throw new Error(`parseDefinition threw ${(err as Error)?.name}: ${(err as Error)?.message}`, { cause: err });
    return { err };
  }
}

/** What any definition that parses must satisfy, whatever the text was. */
function expectSound(def: ReturnType<typeof parseDefinition>): void {
  expect(ifnameProblem(def.bridge.name)).toBeUndefined();
  expect(def.bridge.name).not.toBe('all');
  const v4 = def.addresses.filter((a) => a.family === 4);
  expect(v4).toHaveLength(1);
  for (const a of def.addresses) {
    expect(parseIfAddress(`${a.address}/${a.prefix}`)).toEqual(a);
    if (a.family === 4) {
      expect(a.prefix).toBeGreaterThanOrEqual(8);
      expect(a.prefix).toBeLessThanOrEqual(30);
      expect(ipaddr.IPv4.networkAddressFromCIDR(a.cidr).toString()).toBe(a.network);
    }
  }
  const range = def.dhcp.range4;
  if (range) {
    const net = subnetOf(v4[0]!);
    expect(contains(net, range.start) && contains(net, range.end)).toBe(true);
    expect(compare(range.start, range.end)).toBeLessThanOrEqual(0);
  }
  expect(['none', 'stub']).toContain(def.lifecycle.standby);
  expect(['nat', 'isolated']).toContain(def.forward.mode);
}

describe('parseDefinition under fuzz', () => {
  it('arbitrary text: returns a sound definition or throws DefinitionError naming the file, nothing else', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 400 }), fc.string({ unit: 'grapheme-ascii', maxLength: 400 })), (text) => {
        const r = parse(text);
        if (r.def) expectSound(r.def);
        else expect(r.err!.message.startsWith(`${FILE}: `)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('generated tables: only known keys are ever accepted; a refusal names a key of the file, or the file', () => {
    fc.assert(
      fc.property(fc.array(keyValue, { maxLength: 8 }), fc.boolean(), (entries, withBase) => {
        const all: Array<[string, unknown]> = withBase ? [['bridge', 'vnbr1'], ['address', '10.10.0.1/24'], ...entries] : entries;
        // TOML forbids a key twice; keep the last of each
        const table = new Map(all);
        const text = toml([...table]);
        const r = parse(text);
        if (r.def) {
          expectSound(r.def);
          for (const key of table.keys()) expect(DEFINITION_KEYS).toContain(key);
          expect(r.def.bridge.name).toBe(table.get('bridge'));
        } else {
          const err = r.err!;
          expect(err.file).toBe(FILE);
          if (err.key !== undefined) expect([...table.keys(), 'bridge', 'address']).toContain(err.key);
          expect(err.message.length).toBeLessThan(2000);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('a key named after an Object.prototype member is an unknown key, not a TypeError or a silent pass', () => {
    for (const key of PROTO_NAMES) {
      const r = parse(toml([['bridge', 'vnbr1'], ['address', '10.10.0.1/24'], [key, 1]]));
      expect(r.err, key).toBeInstanceOf(DefinitionError);
      expect(r.err!.message).toContain('unknown key');
    }
  });

  it('is deterministic: the same text gives the same definition or the same message', () => {
    fc.assert(
      fc.property(fc.array(keyValue, { maxLength: 6 }), (entries) => {
        const text = toml([['bridge', 'vnbr1'], ['address', '10.10.0.1/24'], ...new Map(entries)]);
        const a = parse(text);
        const b = parse(text);
        expect(a.def ?? a.err!.message).toEqual(b.def ?? b.err!.message);
      }),
      { numRuns: 500 },
    );
  });
});

// ---------- bridge.conf include graphs ----------

const ROOT = '/etc/qemu/bridge.conf';
const FILES = [ROOT, '/etc/qemu/a.conf', '/etc/qemu/b.conf', '/etc/qemu/c.conf', '/etc/qemu/d.conf', '/etc/qemu/gone.conf'];
const BRIDGES = ['br0', 'br1', 'virbr0'];

type Line = { kind: 'allow' | 'deny'; name: string } | { kind: 'include'; to: number };
/** A random tree of files (index into FILES); the last file is never present (unreadable). */
const graph = fc.array(
  fc.array(
    fc.oneof(
      fc.record({ kind: fc.constantFrom('allow' as const, 'deny' as const), name: fc.constantFrom(...BRIDGES, 'all') }),
      fc.record({ kind: fc.constant('include' as const), to: fc.integer({ min: 0, max: FILES.length - 1 }) }),
    ),
    { maxLength: 6 },
  ),
  { minLength: FILES.length - 1, maxLength: FILES.length - 1 },
);

function render(lines: Line[]): string {
  return lines.map((l) => (l.kind === 'include' ? `include ${FILES[l.to]}` : `${l.kind} ${l.name}`)).join('\n');
}

function treeOf(files: Record<string, string>): AclLoader {
  return (f) => (Object.hasOwn(files, f) ? files[f]! : { error: `${f}: ENOENT` });
}

/** The reference: files reachable from the root through includes of present files; deny anywhere wins. */
function model(g: Line[][], bridge: string): { allowed: boolean; denied: boolean } {
  const seen = new Set<number>([0]);
  const todo = [0];
  let allow = false;
  let deny = false;
  while (todo.length) {
    const i = todo.pop()!;
    for (const l of g[i] ?? []) {
      if (l.kind === 'include') {
        if (!seen.has(l.to) && l.to < g.length) todo.push(l.to);
        seen.add(l.to);
      } else if (l.name === 'all' || l.name === bridge) {
        if (l.kind === 'deny') deny = true;
        else allow = true;
      }
    }
  }
  return { allowed: allow && !deny, denied: deny };
}

const filesOf = (g: Line[][], text = render) => Object.fromEntries(g.map((lines, i) => [FILES[i]!, text(lines)]));

describe('bridge.conf include graphs under fuzz', () => {
  it('any include graph (cycles, self-includes, missing files): the decision is the reference model', () => {
    fc.assert(
      fc.property(graph, fc.constantFrom(...BRIDGES), (g, bridge) => {
        const got = evaluateAcl(bridge, treeOf(filesOf(g)), { root: ROOT });
        expect({ allowed: got.allowed, denied: got.denied }).toEqual(model(g, bridge));
        expect(got.allowed && got.denied).toBe(false);
        expect(got.reason).toMatch(/^(allowed by acl file: (allow) \S+ \(\/etc\/qemu\/\w+\.conf:\d+\)|access denied by acl file: )/);
      }),
      { numRuns: 2000 },
    );
  });

  it('is deterministic, and reads each file at most once', () => {
    fc.assert(
      fc.property(graph, fc.constantFrom(...BRIDGES), (g, bridge) => {
        const files = filesOf(g);
        const reads: string[] = [];
        const load: AclLoader = (f) => (reads.push(f), treeOf(files)(f));
        const a = evaluateAcl(bridge, load, { root: ROOT });
        expect(new Set(reads).size).toBe(reads.length);
        expect(evaluateAcl(bridge, treeOf(files), { root: ROOT })).toEqual(a);
      }),
      { numRuns: 1000 },
    );
  });

  it('splits a line where qemu-bridge-helper does: at the first space, else at the first tab', () => {
    const one = (text: string) => evaluateAcl('br0', (f) => (f === ROOT ? text : { error: 'missing' }), { root: ROOT });
    expect(one('allow\tbr0\n')).toMatchObject({ allowed: true });
    expect(one('\t allow \t br0 \r\n')).toMatchObject({ allowed: true });
    // QEMU reads the verb `allow\tbr0` (the first space is the trailing one): unknown, so the file is malformed
    expect(one('allow\tbr0 \n')).toMatchObject({ allowed: false, denied: true });
  });

  it('CRLF endings, blanks, tabs, comments and blank lines change no decision', () => {
    const noisy = (lines: Line[]) =>
      render(lines)
        .split('\n')
        .map((l, i) => `${i % 2 ? '\t' : '  '}${l.replace(' ', i % 3 ? ' \t ' : '  ')}  \r\n# note ${i}\r\n\r\n`)
        .join('');
    fc.assert(
      fc.property(graph, fc.constantFrom(...BRIDGES), (g, bridge) => {
        const plain = evaluateAcl(bridge, treeOf(filesOf(g)), { root: ROOT });
        const noisyR = evaluateAcl(bridge, treeOf(filesOf(g, noisy)), { root: ROOT });
        expect({ allowed: noisyR.allowed, denied: noisyR.denied }).toEqual({ allowed: plain.allowed, denied: plain.denied });
      }),
      { numRuns: 1000 },
    );
  });

  it('one malformed line in any reachable file denies, naming that file; in an unreachable file it changes nothing', () => {
    const badLine = fc.constantFrom('permit br0', 'allow', 'allow br0 br1', 'deny abcdefghijklmnop', 'allow vir\0br0', `# ${'x'.repeat(4100)}`, 'ALLOW br0');
    fc.assert(
      fc.property(graph, fc.constantFrom(...BRIDGES), fc.nat(), badLine, (g, bridge, pick, bad) => {
        const i = pick % g.length;
        const files = filesOf(g);
        files[FILES[i]!] = `${files[FILES[i]!]}\n${bad}\n`;
        const reachable = reach(g);
        const got = evaluateAcl(bridge, treeOf(files), { root: ROOT });
        if (reachable.has(i)) {
          expect(got).toMatchObject({ allowed: false, denied: true });
          expect(got.reason).toContain(`\`${FILES[i]}': line `);
        } else {
          expect({ allowed: got.allowed, denied: got.denied }).toEqual(model(g, bridge));
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('any bridge name: never throws; names the kernel cannot have are denied before a file is read', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (bridge) => {
        const reads: string[] = [];
        const r = evaluateAcl(bridge, (f) => (reads.push(f), 'allow all\n'), { root: ROOT });
        const impossible = bridge === '' || bridge.includes('\0') || Buffer.byteLength(bridge) >= 16;
        expect(r.allowed).toBe(!impossible);
        if (impossible) expect(reads).toEqual([]);
      }),
      { numRuns: 2000 },
    );
  });

  it('parseAcl of one random line either yields exactly one well-formed rule, nothing (blank, comment), or a line-1 problem', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 80 }).filter((s) => !s.includes('\n')), (line) => {
        const r = parseAcl(line, ROOT);
        if (r.problem !== undefined) {
          expect(r.problem).toMatch(/^line 1: /);
          return;
        }
        expect(r.rules.length).toBeLessThanOrEqual(1);
        for (const rule of r.rules) {
          if (rule.kind === 'include') expect(rule.path.startsWith('/')).toBe(true);
          else {
            expect(rule.name).not.toMatch(/[ \t\n\r\v\f\0]/);
            expect(Buffer.byteLength(rule.name)).toBeLessThan(16);
          }
        }
      }),
      { numRuns: 2000 },
    );
  });
});

function reach(g: Line[][]): Set<number> {
  const seen = new Set<number>([0]);
  const todo = [0];
  while (todo.length)
    for (const l of g[todo.pop()!] ?? [])
      if (l.kind === 'include' && !seen.has(l.to) && l.to < g.length) {
        seen.add(l.to);
        todo.push(l.to);
      }
  return seen;
}

// ---------- frames and requests ----------

describe('frames and requests under fuzz', () => {
  it('any JSON values, framed and cut into any chunks, come back equal and in order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.jsonValue({ maxDepth: 3 }), { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (values, cuts) => {
          const bytes = Buffer.concat(values.map((v) => encodeFrame(v)));
          const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
          const r = new FrameReader();
          const got: unknown[] = [];
          let from = 0;
          for (const p of [...points, bytes.length]) {
            got.push(...r.push(bytes.subarray(from, p)));
            from = p;
          }
          // JSON round trip: -0 becomes 0
          expect(got).toEqual(values.map((v) => JSON.parse(JSON.stringify(v))));
          expect(r.pending).toBe(0);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('read(): the good frames before a bad one come back with the error; after it, the reader stays failed', () => {
    fc.assert(
      fc.property(
        fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 4 }),
        fc.constantFrom(Buffer.from([0, 0, 0, 0]), Buffer.from([0xff, 0xff, 0xff, 0xff]), Buffer.from([0, 0, 0, 2, 0xc3, 0x28]), Buffer.from([0, 0, 0, 1, 0x7b])),
        (values, bad) => {
          const r = new FrameReader();
          const out = r.read(Buffer.concat([...values.map((v) => encodeFrame(v)), bad, encodeFrame('after')]));
          expect(out.frames).toEqual(values.map((v) => JSON.parse(JSON.stringify(v))));
          expect(out.error).toBeInstanceOf(ProtocolError);
          expect(r.read(encodeFrame(1))).toEqual({ frames: [], error: out.error });
          expect(() => r.push(encodeFrame(1))).toThrow(ProtocolError);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('parseRequest: any JSON value is a request with a safe id, a 1..64 character method and object params, or a ProtocolError', () => {
    const value = fc.oneof(
      fc.jsonValue({ maxDepth: 3 }),
      fc.record(
        {
          id: fc.oneof(fc.integer(), fc.double(), fc.string(), fc.constant(null)),
          method: fc.oneof(fc.string({ maxLength: 70 }), fc.constantFrom(...PROTO_NAMES), fc.integer()),
          params: fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constant(undefined)),
        },
        { requiredKeys: [] },
      ),
    );
    fc.assert(
      fc.property(value, (v) => {
        // as it arrives from a socket: through JSON text, so "__proto__" keys are own keys
        const parsed: unknown = JSON.parse(JSON.stringify(v) ?? 'null');
        let req;
        try {
          req = parseRequest(parsed);
        } catch (err) {
          expect(err).toBeInstanceOf(ProtocolError);
          return;
        }
        expect(Number.isSafeInteger(req.id)).toBe(true);
        expect(req.method.length).toBeGreaterThanOrEqual(1);
        expect(req.method.length).toBeLessThanOrEqual(64);
        expect(typeof req.params === 'object' && req.params !== null && !Array.isArray(req.params)).toBe(true);
      }),
      { numRuns: 2000 },
    );
    // nothing leaked into Object.prototype through "__proto__" keys
    const polluted = parseRequest(JSON.parse('{"id":1,"method":"x","params":{"__proto__":{"name":"default","polluted":true}}}'));
    expect(polluted.params.name).toBeUndefined();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
