/**
 * bridge.conf semantics (malformed files, unreadable files, deny beats allow, other bridges), file
 * permissions as the caller, /proc groups,
 * passwd/group lookups and a network's allow-users / allow-groups.
 */
import fc from 'fast-check';
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NssIdentity } from '../../src/identity/nss.js';
import { networkAllows } from '../../src/policy/access.js';
import { evaluateAcl, parseAcl, type AclLoader } from '../../src/qemu/acl.js';
import { callerCred, callerGroups, parseProcStatus } from '../../src/sys/proc.js';
import { canRead, canSearch, loadAsCaller } from '../../src/sys/read-as.js';

const ROOT = '/etc/qemu/bridge.conf';

/** A loader over an in-memory tree; files absent from it are "missing". */
function tree(files: Record<string, string>, reads: string[] = []): AclLoader {
  return (file) => {
    reads.push(file);
    const text = files[file];
    return text === undefined ? { error: `${file}: ENOENT` } : text;
  };
}

const decide = (bridge: string, files: Record<string, string>) => evaluateAcl(bridge, tree(files), { root: ROOT });

describe('bridge.conf rules', () => {
  it('allows a listed bridge and nothing else (item 10: eth0, lo, the uplink, an unlisted bridge)', () => {
    const files = { [ROOT]: '# session VMs\nallow virbr0\n' };
    expect(decide('virbr0', files)).toEqual({ allowed: true, denied: false, reason: `allowed by acl file: allow virbr0 (${ROOT}:2)` });
    for (const other of ['eth0', 'lo', 'up0', 'virbr1', 'virbr', 'virbr00', 'VIRBR0'])
      expect(decide(other, files)).toEqual({ allowed: false, denied: false, reason: `access denied by acl file: no rule allows \`${other}'` });
  });

  it('item 8: `allow all` then `deny virbr0`, and `deny all` then `allow virbr0`, both deny virbr0', () => {
    expect(decide('virbr0', { [ROOT]: 'allow all\ndeny virbr0\n' })).toEqual({
      allowed: false,
      denied: true,
      reason: `access denied by acl file: deny virbr0 (${ROOT}:2)`,
    });
    expect(decide('virbr0', { [ROOT]: 'deny all\nallow virbr0\n' })).toEqual({
      allowed: false,
      denied: true,
      reason: `access denied by acl file: deny all (${ROOT}:1)`,
    });
    expect(decide('virbr1', { [ROOT]: 'allow all\ndeny virbr0\n' }).allowed).toBe(true);
  });

  it('a deny in an included file beats an allow in the top file, and the other way round', () => {
    expect(decide('br0', { [ROOT]: 'allow br0\ninclude /etc/qemu/deny.conf\n', '/etc/qemu/deny.conf': 'deny br0\n' }).allowed).toBe(false);
    expect(decide('br0', { [ROOT]: 'deny br0\ninclude /etc/qemu/a.conf\n', '/etc/qemu/a.conf': 'allow br0\n' }).allowed).toBe(false);
    expect(decide('br0', { [ROOT]: 'include /etc/qemu/a.conf\n', '/etc/qemu/a.conf': 'allow br0\n' })).toEqual({
      allowed: true,
      denied: false,
      reason: 'allowed by acl file: allow br0 (/etc/qemu/a.conf:1)',
    });
  });

  it('resolves a relative include against the including file, not the working directory', () => {
    const files = { [ROOT]: 'include users/alice.conf\n', '/etc/qemu/users/alice.conf': 'allow br0\n' };
    expect(decide('br0', files).allowed).toBe(true);
    expect(parseAcl('include ../x\n', '/etc/qemu/sub/bridge.conf').rules).toEqual([{ kind: 'include', path: '/etc/qemu/x', line: 1 }]);
  });

  it('item 7: an empty or missing top file denies; a missing top file says "failed to parse default acl file"', () => {
    expect(decide('virbr0', { [ROOT]: '' })).toEqual({ allowed: false, denied: false, reason: "access denied by acl file: no rule allows `virbr0'" });
    expect(decide('virbr0', { [ROOT]: '# nothing\n\n   \n' }).allowed).toBe(false);
    expect(decide('virbr0', {})).toEqual({
      allowed: false,
      denied: false,
      reason: `failed to parse default acl file \`${ROOT}': ${ROOT}: ENOENT`,
    });
  });

  it('an include that cannot be read adds nothing (its denies do not apply either, as in QEMU)', () => {
    expect(decide('br0', { [ROOT]: 'include /etc/qemu/gone.conf\n' }).allowed).toBe(false);
    expect(decide('br0', { [ROOT]: 'allow br0\ninclude /etc/qemu/gone.conf\n' }).allowed).toBe(true);
  });

  it('refuses bridge names of 16 bytes or more (and empty or NUL) before reading any file', () => {
    for (const bad of ['', 'abcdefghijklmnop', 'x'.repeat(300), 'ééééééééé', 'br\0x']) {
      const reads: string[] = [];
      const r = evaluateAcl(bad, tree({ [ROOT]: 'allow all\n' }, reads), { root: ROOT });
      expect(r.allowed).toBe(false);
      expect(r.reason).toMatch(/^access denied: (empty bridge name|bridge name)/);
      expect(reads).toEqual([]);
    }
    expect(decide('abcdefghijklmno', { [ROOT]: 'allow abcdefghijklmno\n' }).allowed).toBe(true);
  });

  it('names in the file are exact: no wildcards, no prefixes, case-sensitive', () => {
    const files = { [ROOT]: 'allow virbr*\nallow br\nallow Tap0\n' };
    for (const b of ['virbr0', 'virbr*x', 'br0', 'tap0']) expect(decide(b, files).allowed).toBe(false);
    expect(decide('virbr*', files).allowed).toBe(true);
  });
});

describe('item 6: malformed files deny, deterministically', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['an unknown keyword', 'allow br0\npermit br0\n', /line 2: unknown keyword `permit`/],
    ['an upper-case keyword', 'ALLOW br0\n', /line 1: unknown keyword `ALLOW`/],
    ['a keyword without argument', 'allow br0\ndeny\n', /line 2: `deny` has no argument/],
    ['a keyword with blanks only after it', 'allow   \t\n', /line 1: `allow` has no argument/],
    ['two arguments (an inline comment)', 'allow br0 # mine\n', /line 1: `allow` takes one argument/],
    ['a name of 16 bytes', 'allow br0\ndeny abcdefghijklmnop\n', /line 2: name `abcdefghijklmnop` is 16 bytes/],
    ['a line over 4 KiB', `allow br0\n# ${'x'.repeat(4094)}\n`, /line 2: longer than 4095 bytes/],
    ['a NUL byte', 'allow br0\nallow vir\0br0\n', /line 2: contains a NUL byte/],
    ['a NUL byte in a comment', '# \0\nallow br0\n', /line 1: contains a NUL byte/],
  ];
  for (const [what, text, why] of cases) {
    it(`${what} denies even a bridge the file allows`, () => {
      const r = decide('br0', { [ROOT]: text });
      expect(r.allowed).toBe(false);
      expect(r.denied).toBe(true); // malformed refuses even a vnet network's own bridge
      expect(r.reason).toMatch(/^failed to parse default acl file `\/etc\/qemu\/bridge.conf': /);
      expect(r.reason).toMatch(why);
    });
  }

  it('a malformed included file denies everything, naming that file', () => {
    const r = decide('br0', { [ROOT]: 'allow br0\ninclude /etc/qemu/x.conf\n', '/etc/qemu/x.conf': 'alow br0\n' });
    expect(r).toEqual({
      allowed: false,
      denied: true,
      reason: "failed to parse acl file `/etc/qemu/x.conf': line 1: unknown keyword `alow`",
    });
  });

  it('a line of exactly 4095 bytes is fine; its limit counts bytes, not characters', () => {
    expect(decide('br0', { [ROOT]: `allow br0\n#${'x'.repeat(4094)}\n` }).allowed).toBe(true);
    expect(decide('br0', { [ROOT]: `allow br0\n#${'é'.repeat(2048)}\n` }).allowed).toBe(false);
  });

  it('CRLF endings, tabs and surrounding blanks read like plain lines', () => {
    expect(decide('br0', { [ROOT]: '# c\r\nallow br0\r\n' }).allowed).toBe(true);
    expect(decide('br0', { [ROOT]: '\tallow\tbr0\t\r\n' }).allowed).toBe(true);
    expect(decide('br0', { [ROOT]: '  allow  \t br0   ' }).allowed).toBe(true);
    expect(decide('br0', { [ROOT]: 'allow br0\r\ndeny br0\r' }).allowed).toBe(false);
    // a CR inside a line is not a separator
    expect(decide('br0', { [ROOT]: 'allow\rbr0\n' }).reason).toMatch(/no argument/);
  });

  it('an include of itself, or a cycle through another file, ends and keeps the rules', () => {
    expect(decide('br0', { [ROOT]: `include ${ROOT}\nallow br0\n` }).allowed).toBe(true);
    const cycle = { [ROOT]: 'include a.conf\n', '/etc/qemu/a.conf': 'include b.conf\nallow br0\n', '/etc/qemu/b.conf': `include ${ROOT}\ninclude a.conf\n` };
    expect(decide('br0', cycle).allowed).toBe(true);
  });

  it('a chain of 16 files is read; a chain of 17 denies', () => {
    const chain = (n: number) => {
      const files: Record<string, string> = { [ROOT]: 'include f2\n' };
      for (let i = 2; i <= n; i++) files[`/etc/qemu/f${i}`] = i < n ? `include f${i + 1}\n` : 'allow br0\n';
      return files;
    };
    expect(decide('br0', chain(16)).allowed).toBe(true);
    expect(decide('br0', chain(17))).toEqual({
      allowed: false,
      denied: true,
      reason: "failed to parse acl file `/etc/qemu/f16': line 1: includes nest deeper than 16 files",
    });
  });

  it('a wide include tree stops at 256 files', () => {
    const files: Record<string, string> = { [ROOT]: Array.from({ length: 300 }, (_, i) => `include w${i}`).join('\n') };
    for (let i = 0; i < 300; i++) files[`/etc/qemu/w${i}`] = 'allow br0\n';
    expect(decide('br0', files).reason).toMatch(/more than 256 files included/);
  });
});

describe('properties', () => {
  it('the parser never throws and either yields rules or a problem with a line number', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 600 }), (text) => {
        const r = parseAcl(text, ROOT);
        if (r.problem !== undefined) expect(r.problem).toMatch(/^line \d+: /);
        else for (const rule of r.rules) expect(['allow', 'deny', 'include']).toContain(rule.kind);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.constantFrom('allow', 'deny', 'include', '#', '\t', ' ', '\r', '\0', 'all', 'br0', '\n', 'x'.repeat(20))), { maxLength: 60 }),
        (parts) => {
          expect(() => evaluateAcl('br0', tree({ [ROOT]: parts.join('') }), { root: ROOT })).not.toThrow();
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('deny beats allow whatever the order of lines: allowed iff some allow matches and no deny matches', () => {
    const names = ['br0', 'br1', 'all'];
    const line = fc.record({ kind: fc.constantFrom('allow', 'deny'), name: fc.constantFrom(...names) });
    fc.assert(
      fc.property(fc.array(line, { maxLength: 12 }), fc.constantFrom('br0', 'br1', 'br2'), fc.nat(), (lines, bridge, seed) => {
        const hit = (kind: string) => lines.some((l) => l.kind === kind && (l.name === 'all' || l.name === bridge));
        const expected = hit('allow') && !hit('deny');
        const shuffled = [...lines];
        let s = seed;
        for (let i = shuffled.length - 1; i > 0; i--) {
          s = (s * 1103515245 + 12345) % 2 ** 31;
          const j = s % (i + 1);
          [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
        }
        const text = (ls: typeof lines) => ls.map((l) => `${l.kind} ${l.name}`).join('\n');
        expect(decide(bridge, { [ROOT]: text(lines) })).toMatchObject({ allowed: expected, denied: hit('deny') });
        expect(decide(bridge, { [ROOT]: text(shuffled) }).allowed).toBe(expected);
        // splitting the same lines between the top file and an include changes nothing either
        const cut = shuffled.length >> 1;
        const split = { [ROOT]: `${text(shuffled.slice(0, cut))}\ninclude part2`, '/etc/qemu/part2': text(shuffled.slice(cut)) };
        expect(decide(bridge, split).allowed).toBe(expected);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('reading as the caller', () => {
  const alice = { uid: 1000, gids: [1000, 27] };
  it('canRead / canSearch follow the first matching class of the mode bits; root reads all', () => {
    expect(canRead({ mode: 0o100640, uid: 0, gid: 27 }, alice)).toBe(true); // group
    expect(canRead({ mode: 0o100600, uid: 0, gid: 27 }, alice)).toBe(false);
    expect(canRead({ mode: 0o100604, uid: 0, gid: 0 }, alice)).toBe(true); // other
    expect(canRead({ mode: 0o100064, uid: 1000, gid: 27 }, alice)).toBe(false); // owner class wins, owner has no r
    expect(canRead({ mode: 0o100000, uid: 5, gid: 5 }, { uid: 0, gids: [0] })).toBe(true);
    expect(canSearch({ mode: 0o40750, uid: 0, gid: 27 }, alice)).toBe(true);
    expect(canSearch({ mode: 0o40754, uid: 0, gid: 0 }, alice)).toBe(false);
    expect(canSearch({ mode: 0o40700, uid: 0, gid: 0 }, { uid: 0, gids: [] })).toBe(true);
  });

  const dir = mkdtempSync(path.join(os.tmpdir(), 'vnet-acl-'));
  chmodSync(dir, 0o755);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('item 7: a file the caller cannot read grants nothing, even though vnetd (root) could read it', () => {
    const conf = path.join(dir, 'bridge.conf');
    writeFileSync(conf, 'allow br0\n');
    chmodSync(conf, 0o600);
    const load = (cred: { uid: number; gids: number[] }) => (f: string) => loadAsCaller(f, cred);
    const asAlice = evaluateAcl('br0', load(alice), { root: conf });
    expect(asAlice.allowed).toBe(false);
    expect(asAlice.denied).toBe(false); // grants nothing, refuses nothing: a vnet network's own lists decide
    expect(asAlice.reason).toMatch(/failed to parse default acl file .* is not readable by uid 1000 \(mode 600, owner 0:0\)/);
    expect(evaluateAcl('br0', load({ uid: 0, gids: [0] }), { root: conf }).allowed).toBe(true);
    chmodSync(conf, 0o644);
    expect(evaluateAcl('br0', load(alice), { root: conf }).allowed).toBe(true);
  });

  it('a folder on the way without search permission makes the file unreadable', () => {
    const sub = path.join(dir, 'private');
    mkdirSync(sub);
    writeFileSync(path.join(sub, 'inc.conf'), 'allow br1\n');
    chmodSync(path.join(sub, 'inc.conf'), 0o644);
    chmodSync(sub, 0o750);
    const conf = path.join(dir, 'top.conf');
    writeFileSync(conf, 'include private/inc.conf\n');
    chmodSync(conf, 0o644);
    expect(loadAsCaller(path.join(sub, 'inc.conf'), alice)).toEqual({
      error: `cannot read ${sub}/inc.conf: folder ${sub} is not searchable by uid 1000`,
    });
    expect(evaluateAcl('br1', (f) => loadAsCaller(f, alice), { root: conf }).allowed).toBe(false);
    expect(evaluateAcl('br1', (f) => loadAsCaller(f, { uid: 1000, gids: [0] }), { root: conf }).allowed).toBe(true);
  });

  it('a symlink to a file the caller cannot read is unreadable; non-regular files and relative paths are refused', () => {
    const secret = path.join(dir, 'secret.conf');
    writeFileSync(secret, 'allow all\n');
    chmodSync(secret, 0o600);
    const link = path.join(dir, 'link.conf');
    symlinkSync(secret, link);
    expect(loadAsCaller(link, alice)).toMatchObject({ error: expect.stringMatching(/not readable by uid 1000/) });
    expect(loadAsCaller(dir, alice)).toEqual({ error: `${dir} is not a regular file` });
    expect(loadAsCaller('/dev/null', alice)).toEqual({ error: '/dev/null is not a regular file' });
    expect(loadAsCaller('bridge.conf', alice)).toEqual({ error: 'bridge.conf is not an absolute path' });
    expect(loadAsCaller(path.join(dir, 'absent.conf'), alice)).toMatchObject({ error: expect.stringMatching(/ENOENT/) });
  });
});

describe('caller identity and network allow lists', () => {
  const status = 'Name:\tqemu\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nGroups:\t4 24 27 1000 \n';
  it('parses Uid, Gid and Groups from /proc/PID/status', () => {
    expect(parseProcStatus(status)).toEqual({ uids: [1000, 1000, 1000, 1000], gids: [1000, 1000, 1000, 1000], groups: [4, 24, 27, 1000] });
    expect(parseProcStatus('Uid:\t0\t0\t0\t0\nGroups:\t\n').groups).toEqual([]);
  });

  it('reads this process and refuses a pid whose uid is not the one claimed', () => {
    expect(Array.isArray(callerGroups(process.pid, process.getuid!()))).toBe(true);
    expect(() => callerGroups(process.pid, 4242)).toThrow(/process \d+ is no longer uid 4242/);
    expect(() => callerGroups(2 ** 22 + 7, 0)).toThrow(/cannot read \/proc\/\d+\/status/);
    const me = callerCred({ pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
    expect(me.uid).toBe(process.getuid!());
    expect(me.gids).toContain(process.getgid!());
  });

  it('looks users and groups up through NSS (getent), caching answers and unknown names alike', async () => {
    const nss = new NssIdentity();
    expect(await nss.uidOf('root')).toBe(0);
    expect(await nss.gidOf('root')).toBe(0);
    expect(await nss.userOf(0)).toBe('root');
    expect(await nss.uidOf('no-such-user-vnet')).toBeUndefined();
    expect(await nss.gidOf('no-such-group-vnet')).toBeUndefined();
    // a name that is no account name is not even asked for
    expect(await nss.uidOf('-x; rm -rf /')).toBeUndefined();
    // a lookup that fails (a broken NSS module, a timeout) knows nobody: it grants nothing
    expect(await new NssIdentity({ getent: '/bin/false' }).uidOf('root')).toBeUndefined();
  });

  const lookups = {
    uidOf: async (u: string) => ({ alice: 1000, bob: 1001 })[u as 'alice'],
    gidOf: async (g: string) => ({ kvm: 104, netdev: 108 })[g as 'kvm'],
    userOf: async () => undefined,
  };
  it('no lists: everyone; lists: the named users and members of the named groups only', async () => {
    const bob = { uid: 1001, gids: [1001] };
    const carol = { uid: 1002, gids: [1002, 104] };
    expect(await networkAllows({ name: 'default' }, bob, lookups)).toEqual({ allowed: true, reason: 'network default allows every local user' });
    const def = { name: 'office', allowUsers: ['alice', 'nosuchuser'], allowGroups: ['kvm', 'nosuchgroup'] };
    expect(await networkAllows(def, { uid: 1000, gids: [1000] }, lookups)).toEqual({ allowed: true, reason: 'network office allows user alice' });
    expect(await networkAllows(def, carol, lookups)).toEqual({ allowed: true, reason: 'network office allows group kvm' });
    expect(await networkAllows(def, bob, lookups)).toEqual({
      allowed: false,
      reason: 'access denied: network office allows users [alice, nosuchuser] and groups [kvm, nosuchgroup], not uid 1001',
    });
    expect((await networkAllows({ allowUsers: [] }, carol, lookups)).allowed).toBe(false);
    expect((await networkAllows({ allowUsers: [] }, { uid: 0, gids: [0] }, lookups)).allowed).toBe(true);
  });
});
