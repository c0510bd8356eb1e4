/**
 * Networks users create (issue 14), with fakes: the [user-networks] policy of vnet.toml, names
 * (OWNER:NAME, generated bridges, ULAs), who sees which network by which name, and every limit
 * UserNetworks enforces (who, pool, prefix, modes, max-per-user, racing creates), with a real
 * allocator and store in a temp folder and a fake host.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { VnetError } from '../../src/api/errors.js';
import { Definitions } from '../../src/config/networks.js';
import { parseSettings } from '../../src/config/vnet-toml.js';
import type { UserNetworkPolicy } from '../../src/config/user-policy.js';
import type { Identity } from '../../src/identity/nss.js';
import type { PeerCred } from '../../src/model.js';
import { parseSubnet } from '../../src/net/ip.js';
import { authorizeTap } from '../../src/policy/access.js';
import type { HostAddressing } from '../../src/reconcile/conflicts.js';
import { SubnetAllocator } from '../../src/runtime/allocator.js';
import { userAllocationKey } from '../../src/runtime/auto-subnets.js';
import { builtinDefault, parseDefinition } from '../../src/spec/parse.js';
import type { NetworkSpec } from '../../src/spec/spec.js';
import { splitQualified, userBridgeName, userUla } from '../../src/usernet/names.js';
import { resolveName, visibleTo } from '../../src/usernet/resolve.js';
import { UserNetworkStore } from '../../src/usernet/store.js';
import { UserNetworks } from '../../src/usernet/user-networks.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'vnet-usernet-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const log = pino({ level: 'silent' });

const USERS: Record<string, number> = { root: 0, alice: 1000, bob: 1001, carol: 1002, eve: 1003 };
const GROUPS: Record<string, number> = { vnetusers: 500, staff: 50 };
const identity: Identity = {
  uidOf: async (u) => USERS[u],
  gidOf: async (g) => GROUPS[g],
  userOf: async (uid) => Object.keys(USERS).find((k) => USERS[k] === uid),
};
const cred = (user: string, groups: number[] = []): PeerCred => ({ pid: process.pid, uid: USERS[user]!, gid: USERS[user]!, groups });
const alice = cred('alice', [500]);
const bob = cred('bob');
const carol = cred('carol');

function policy(over: Partial<UserNetworkPolicy> = {}): UserNetworkPolicy {
  return { allowUsers: ['bob'], allowGroups: ['vnetusers'], pool: parseSubnet('10.231.0.0/16')!, prefixLength: 24, forwardModes: ['nat', 'isolated'], maxPerUser: 2, ...over };
}

let n = 0;
function setup(opts: { policy?: UserNetworkPolicy | undefined; host?: HostAddressing; admin?: NetworkSpec[]; store?: UserNetworkStore } = {}) {
  const base = path.join(dir, `s${++n}`);
  mkdirSync(base);
  const store = opts.store ?? new UserNetworkStore(path.join(base, 'user-networks', 'networks.json'));
  const allocator = new SubnetAllocator(path.join(base, 'allocations.json'));
  const host: HostAddressing = opts.host ?? { links: [], routes: [], addresses: [] };
  const admin = opts.admin ?? [builtinDefault()];
  const users: UserNetworks = new UserNetworks({
    policy: 'policy' in opts ? opts.policy : policy(),
    policyFile: '/etc/vnet/vnet.toml',
    store,
    allocator,
    identity,
    host: async () => host,
    networks: () => [...admin, ...users.specs()],
    stateDir: base,
    runtimeDir: base,
    log,
  });
  return { users, store, allocator, base };
}

async function refusal(p: Promise<unknown>): Promise<VnetError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'expected a refusal').toBeInstanceOf(VnetError);
  return err as VnetError;
}

describe('[user-networks] in vnet.toml', () => {
  const parse = (text: string) => parseSettings('/etc/vnet/vnet.toml', text);

  it('reads every key; absent table: nobody may', () => {
    expect(parse('').userNetworks).toBeUndefined();
    const p = parse('[user-networks]\nallow-users = ["alice"]\nallow-groups = ["vnetusers"]\npool = "10.231.0.0/16"\nprefix-length = 26\nforward-modes = ["isolated"]\nmax-per-user = 3\n').userNetworks!;
    expect(p).toEqual({ allowUsers: ['alice'], allowGroups: ['vnetusers'], pool: parseSubnet('10.231.0.0/16'), prefixLength: 26, forwardModes: ['isolated'], maxPerUser: 3 });
    expect(parse('[user-networks]\npool = "10.231.0.0/16"\n').userNetworks).toMatchObject({ allowUsers: [], allowGroups: [], prefixLength: 24, forwardModes: ['nat', 'isolated'], maxPerUser: 4 });
  });

  it.each([
    ['[user-networks]\nallow-users = ["alice"]\n', /key `user-networks.pool`: is required/],
    ['[user-networks]\npool = "10.231.0.0/16"\nbogus = 1\n', /key `user-networks.bogus`: unknown key; known keys are allow-users, allow-groups, pool/],
    ['[user-networks]\npool = "10.231.0.1/16"\n', /key `user-networks.pool` = "10.231.0.1\/16": expected an IPv4 subnet without host bits/],
    ['[user-networks]\npool = "127.0.0.0/8"\n', /127.0.0.0\/8 is a loopback range/],
    ['[user-networks]\npool = "10.231.0.0/24"\nprefix-length = 20\n', /key `user-networks.prefix-length` = 20: a \/20 does not fit in the pool 10.231.0.0\/24/],
    ['[user-networks]\npool = "10.231.0.0/16"\nforward-modes = ["nat", "open"]\n', /key `user-networks.forward-modes` = \["nat","open"\]: element "open": user networks may be "nat" or "isolated"/],
    ['[user-networks]\npool = "10.231.0.0/16"\nmax-per-user = 65\n', /key `user-networks.max-per-user` = 65: expected an integer 0..64/],
    ['[user-networks]\npool = "10.231.0.0/16"\nallow-users = ["bad name"]\n', /element "bad name" is not a valid user or group name/],
    ['user-networks = 3\n', /key `user-networks` = 3: expected a table/],
  ])('%j is refused naming file, key and value', (text, message) => {
    expect(() => parse(text)).toThrow(/^\/etc\/vnet\/vnet.toml: key `user-networks/);
    expect(() => parse(text)).toThrow(message);
  });

  it('an allow list longer than 256 names is refused', () => {
    const names = Array.from({ length: 257 }, (_, i) => `"u${i}"`).join(', ');
    expect(() => parse(`[user-networks]\npool = "10.231.0.0/16"\nallow-users = [${names}]\n`)).toThrow(/at most 256 names, got 257/);
  });
});

describe('names', () => {
  it('bridges: "vn-" and 11 hex digits, within IFNAMSIZ, another on each attempt', () => {
    const a = userBridgeName(1000, 'mynet', 0);
    expect(a).toMatch(/^vn-[0-9a-f]{11}$/);
    expect(userBridgeName(1000, 'mynet', 0)).toBe(a);
    expect(new Set([a, userBridgeName(1001, 'mynet', 0), userBridgeName(1000, 'mynet', 1)]).size).toBe(3);
  });

  it('ULAs: an fd00::/8 /64, the bridge at ::1', () => {
    expect(userUla(1000, 'mynet', 0)).toMatch(/^fd[0-9a-f]{2}:[0-9a-f]{1,4}:[0-9a-f]{1,4}:[0-9a-f]{1,4}::1\/64$/);
  });

  it('OWNER:NAME splits only when both halves are valid', () => {
    expect(splitQualified('alice:mynet')).toEqual({ owner: 'alice', name: 'mynet' });
    for (const bad of ['mynet', ':mynet', 'alice:', 'a b:x', 'alice:a:b', 'alice:../x']) expect(splitQualified(bad), bad).toBeUndefined();
  });
});

describe('UserNetworks: limits', () => {
  it('no [user-networks] table: nobody may, root neither', async () => {
    const { users } = setup({ policy: undefined });
    for (const who of [alice, cred('root')]) {
      const e = await refusal(users.create({ name: 'x' }, who));
      expect(e.code).toBe('EPERM');
      expect(e.message).toMatch(/\/etc\/vnet\/vnet.toml has no \[user-networks\] table/);
    }
  });

  it('who may: the users and groups listed, and root; others are refused', async () => {
    const { users } = setup();
    expect((await users.create({ name: 'a' }, alice)).name).toBe('alice:a'); // by group
    expect((await users.create({ name: 'b' }, bob)).name).toBe('bob:b'); // by name
    expect((await users.create({ name: 'r' }, cred('root'))).name).toBe('root:r');
    const e = await refusal(users.create({ name: 'c' }, carol));
    expect(e.code).toBe('EPERM');
    expect(e.message).toMatch(/uid 1002 may not create networks/);
  });

  it('subnets: auto from the pool past host routes and other networks; a CIDR must be a free /24 of the pool', async () => {
    const host: HostAddressing = { links: [{ index: 2, name: 'eth0' }], routes: [{ dst: '10.231.0.0/24', oif: 2 } as never], addresses: [] };
    const { users } = setup({ host, policy: policy({ maxPerUser: 10 }) });
    const a = await users.create({ name: 'a' }, alice);
    expect(a.addresses[0]!.cidr).toBe('10.231.1.0/24');
    expect(a.dhcp.range4).toBeUndefined();
    const b = await users.create({ name: 'b', subnet: '10.231.7.0/24', dhcp: true }, alice);
    expect(b.addresses[0]!.address).toBe('10.231.7.1');
    expect(b.dhcp.range4).toEqual({ start: '10.231.7.2', end: '10.231.7.254' });
    const cases: Array<[string, string, RegExp]> = [
      ['192.168.9.0/24', 'EPERM', /outside the user networks' pool 10.231.0.0\/16/],
      ['10.231.8.0/25', 'EPERM', /user networks are \/24s/],
      ['10.231.0.0/24', 'EADDRINUSE', /overlaps 10.231.0.0\/24, which is in use/],
      ['10.231.7.0/24', 'EADDRINUSE', /overlaps 10.231.7.0\/24/],
      ['10.231.7.1/24', 'EINVAL', /subnet must be "auto" or an IPv4 subnet without host bits/],
    ];
    for (const [subnet, code, msg] of cases) {
      const e = await refusal(users.create({ name: 'x', subnet }, alice));
      expect([e.code, e.message], subnet).toEqual([code, expect.stringMatching(msg)]);
    }
  });

  it('a full pool is EDQUOT; modes outside the policy are EPERM; names are checked', async () => {
    const { users } = setup({ policy: policy({ pool: parseSubnet('10.231.0.0/23')!, forwardModes: ['isolated'], maxPerUser: 10 }) });
    expect((await users.create({ name: 'a' }, alice)).forward.mode).toBe('isolated');
    await users.create({ name: 'b' }, alice);
    const full = await refusal(users.create({ name: 'c' }, alice));
    expect([full.code, full.message]).toEqual(['EDQUOT', expect.stringMatching(/no free \/24 left in the user networks' pool 10.231.0.0\/23/)]);
    const mode = await refusal(users.create({ name: 'd', forward: 'nat' }, alice));
    expect([mode.code, mode.message]).toEqual(['EPERM', expect.stringMatching(/forward mode "nat" is not allowed for user networks \(allowed: isolated/)]);
    for (const name of ['', 'a:b', '-x', 'x'.repeat(32), 'a/b', 'é', 'a\nb', '../../etc']) {
      const e = await refusal(users.create({ name }, alice));
      expect(e.code, JSON.stringify(name)).toBe('EINVAL');
    }
    const admin = await refusal(users.create({ name: 'default' }, alice));
    expect([admin.code, admin.message]).toEqual(['EEXIST', expect.stringMatching(/names the admin's network "default"/)]);
    const bridge = await refusal(users.create({ name: 'virbr0' }, alice));
    expect(bridge.code).toBe('EEXIST');
  });

  it('max-per-user holds against racing creates, and a delete frees a place and the subnet', async () => {
    const { users, allocator } = setup();
    const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => users.create({ name: `n${i}` }, alice)));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(2);
    for (const r of results.filter((x) => x.status === 'rejected')) expect(((r as PromiseRejectedResult).reason as VnetError).code).toBe('EDQUOT');
    expect(allocator.keys().sort()).toEqual(users.specs().map((s) => userAllocationKey(1000, s.name.slice('alice:'.length))).sort());
    const [first] = users.specs();
    await users.remove(first!, async () => undefined);
    expect(users.specs()).toHaveLength(1);
    expect(allocator.keys()).toHaveLength(1);
    await users.create({ name: 'again' }, alice);
    const again = await refusal(users.create({ name: 'more' }, alice));
    expect(again.code).toBe('EDQUOT');
  });

  it('a failed bring-down puts the record back; its subnet stays kept', async () => {
    const { users, allocator } = setup();
    const spec = await users.create({ name: 'a' }, alice);
    await expect(users.remove(spec, async () => Promise.reject(new VnetError('EBUSY', 'taps in use')))).rejects.toThrow(/taps in use/);
    expect(users.specs().map((s) => s.name)).toEqual(['alice:a']);
    expect(allocator.keys()).toEqual([userAllocationKey(1000, 'a')]);
    // the picks file is readable by all: it names neither the owner nor the network
    expect(readFileSync(allocator.file, 'utf8')).not.toMatch(/1000|"a"|:a"/);
  });

  it('allow-users: resolved to uids when listed; unknown users, long lists and the owner are handled', async () => {
    const { users } = setup();
    const s = await users.create({ name: 'a', allowUsers: ['bob', 'alice', 'bob'] }, alice);
    expect(s.access).toEqual({ allowUsers: ['bob'], allowUids: [1001] });
    expect((await refusal(users.create({ name: 'b', allowUsers: ['nobody-here'] }, alice))).message).toMatch(/no user named "nobody-here"/);
    expect((await refusal(users.create({ name: 'b', allowUsers: Array.from({ length: 33 }, () => 'bob') }, alice))).message).toMatch(/at most 32 users/);
  });

  it('the bridge name avoids every existing link', async () => {
    const taken = userBridgeName(1000, 'a', 0);
    const { users } = setup({ host: { links: [{ index: 9, name: taken }], routes: [], addresses: [] } });
    expect((await users.create({ name: 'a' }, alice)).bridge.name).toBe(userBridgeName(1000, 'a', 1));
  });

  it('the records survive a new store (a vnetd restart); a corrupt file is named, served from and written over never', async () => {
    const { users, store } = setup();
    await users.create({ name: 'a', dhcp: true, ipv6: 'auto' }, alice);
    const again = new UserNetworkStore(store.file);
    expect(again.all()).toEqual(store.all());
    expect(again.all()[0]).toMatchObject({ uid: 1000, user: 'alice', name: 'a', subnet: '10.231.0.0/24', dhcp: true, address6: expect.stringMatching(/^fd.*::1\/64$/) });
    writeFileSync(store.file, '{"version":1,"networks":[{"uid":1000,"user":"alice","name":"../x"}]}');
    const corrupt = new UserNetworkStore(store.file);
    expect(corrupt.all()).toEqual([]);
    expect(corrupt.problem()).toMatch(/networks.json is corrupt \(network 0: bad name\)/);
    const { users: broken } = setup({ store: corrupt });
    const e = await refusal(broken.create({ name: 'b' }, alice));
    expect([e.code, e.message]).toEqual(['EIO', expect.stringMatching(/is corrupt/)]);
    expect(readFileSync(store.file, 'utf8')).toContain('../x');
  });
});

describe('who sees which network by which name', () => {
  const admin = (name: string, bridge: string, address: string) => parseDefinition(name, `${name}.toml`, `bridge = "${bridge}"\naddress = "${address}"\n`);
  async function world() {
    const { users } = setup({ admin: [admin('office', 'vnoff0', '10.10.0.1/24')] });
    const a = await users.create({ name: 'lab', allowUsers: ['bob'] }, alice);
    const b = await users.create({ name: 'lab' }, bob);
    const specs = new Map<string, NetworkSpec>([[`office`, admin('office', 'vnoff0', '10.10.0.1/24')], [a.name, a], [b.name, b]]);
    return { a, b, specs };
  }

  it('the owner says NAME; root and the users listed say OWNER:NAME; nobody else finds it, by any name', async () => {
    const { a, b, specs } = await world();
    expect(resolveName('lab', 1000, specs)).toBe(a);
    expect(resolveName('lab', 1001, specs)).toBe(b);
    expect(resolveName('alice:lab', 1001, specs)).toBe(a);
    expect(resolveName('alice:lab', 0, specs)).toBe(a);
    expect(resolveName('lab', 0, specs)).toBeUndefined(); // root has no "lab" of its own
    expect(resolveName(a.bridge.name, 1000, specs)).toBe(a);
    for (const said of ['alice:lab', a.bridge.name, 'lab']) expect(resolveName(said, 1002, specs), said).toBeUndefined();
    expect(resolveName('bob:lab', 1000, specs)).toBeUndefined();
    expect(resolveName('alice:lab', -1, specs)).toBeUndefined();
    expect([visibleTo(a, 1000), visibleTo(a, 1001), visibleTo(a, 0), visibleTo(a, 1002), visibleTo(b, 1000)]).toEqual([true, true, true, false, false]);
  });

  it('an admin network wins its bare name for everyone, the user network\'s owner too', async () => {
    const { specs } = await world();
    const mine = [...specs.values()].find((s) => s.name === 'alice:lab')!;
    // the admin adds a network called "lab" after alice made hers
    specs.set('lab', admin('lab', 'vnlab0', '10.11.0.1/24'));
    expect(resolveName('lab', 1000, specs)!.name).toBe('lab');
    expect(resolveName('alice:lab', 1000, specs)).toBe(mine);
    expect(resolveName('vnoff0', 1000, specs)!.name).toBe('office');
  });

  it('taps: the owner, the users listed and root; the refusal names neither the network nor its users', async () => {
    const { a } = await world();
    const qemu = path.join(dir, 'qemu-none');
    for (const who of [alice, cred('bob'), cred('root')]) await authorizeTap(a.bridge.name, a, who, qemu, identity);
    const err = await refusal(authorizeTap(a.bridge.name, a, carol, qemu, identity));
    expect(err.code).toBe('EACCES');
    expect(err.message).toBe(`access denied: ${a.bridge.name} is another user's network, not open to uid 1002`);
  });
});

describe('user networks beside the admin\'s definitions', () => {
  it('they join the loaded set as OWNER:NAME; one an admin network later clashes with yields to it', async () => {
    const { users } = setup();
    await users.create({ name: 'a' }, alice); // 10.231.0.0/24
    await users.create({ name: 'b' }, alice); // 10.231.1.0/24
    const nets = path.join(dir, `defs${++n}`);
    mkdirSync(nets);
    const defs = new Definitions(nets, () => Date.now() + 10_000, (set) => set, () => users.specs());
    expect([...defs.load().networks.keys()].sort()).toEqual(['alice:a', 'alice:b', 'default']);
    writeFileSync(path.join(nets, 'office.toml'), 'bridge = "vnoff0"\naddress = "10.231.1.1/24"\n');
    const { networks, errors } = defs.load();
    expect([...networks.keys()].sort()).toEqual(['alice:a', 'default', 'office']);
    expect(errors.get('alice:b')?.message).toMatch(/subnet overlaps 10.231.1.0\/24 of network "office"/);
  });
});
