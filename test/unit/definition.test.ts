import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Definitions, readDefinitionSet } from '../../src/config/networks.js';
import { builtinDefault, DefinitionError, parseDefinition } from '../../src/spec/parse.js';

const F = '/etc/vnet/networks/office.toml';
const good = `bridge = "vnbr1"\naddress = "10.10.0.1/24"\ndhcp-range = ["10.10.0.10", "10.10.0.99"]\nforward = "nat"\non-demand = false\nidle-down = 30\n`;

function err(text: string): DefinitionError {
  try {
    parseDefinition('office', F, text);
  } catch (e) {
    expect(e).toBeInstanceOf(DefinitionError);
    return e as DefinitionError;
  }
  throw new Error('expected a DefinitionError');
}

describe('parseDefinition', () => {
  it('parses every key into the model', () => {
    const def = parseDefinition(
      'office',
      F,
      good + `standby = "stub"\nallow-users = ["alice"]\nallow-groups = ["kvm"]\ndomain = "office.test"\nmtu = 1400\ndhcp-lease-max = 50\n`,
    );
    expect(def).toEqual({
      name: 'office',
      source: F,
      owner: { kind: 'admin' },
      bridge: { name: 'vnbr1', managed: true, mtu: 1400 },
      addresses: [{ family: 4, address: '10.10.0.1', prefix: 24, network: '10.10.0.0', cidr: '10.10.0.0/24' }],
      forward: { mode: 'nat' },
      dhcp: { range4: { start: '10.10.0.10', end: '10.10.0.99' }, leaseMax: 50 },
      dns: { domain: 'office.test' },
      access: { allowUsers: ['alice'], allowGroups: ['kvm'] },
      lifecycle: { onDemand: false, idleDown: 30, standby: 'stub', autostart: false },
    });
  });

  it('fills defaults and leaves DHCP off without dhcp-range', () => {
    const def = parseDefinition('x', F, 'bridge = "b0"\naddress = "10.1.2.1/24"\n');
    expect(def.dhcp.range4).toBeUndefined();
    expect(def).toMatchObject({ forward: { mode: 'nat' }, lifecycle: { onDemand: true, idleDown: 60, standby: 'none' }, dhcp: { leaseMax: 253 } });
  });

  it('the built-in default is libvirt-like virbr0', () => {
    expect(builtinDefault()).toMatchObject({
      name: 'default',
      source: 'built-in',
      bridge: { name: 'virbr0', managed: true },
      addresses: [{ family: 4, cidr: '192.168.122.0/24', address: '192.168.122.1' }],
      dhcp: { range4: { start: '192.168.122.2', end: '192.168.122.254' } },
      lifecycle: { onDemand: true, idleDown: 60 },
    });
  });

  it.each([
    ['address = "10.10.0.300/24"', 'address', '10.10.0.300/24'],
    ['address = "10.10.0.1"', 'address', '10.10.0.1'],
    ['address = "10.10.0.0/24"', 'address', 'network address'],
    ['address = "10.10.0.255/24"', 'address', 'broadcast'],
    ['address = "10.10.0.1/31"', 'address', '/31'],
    ['address = "10.10.0.1/32"', 'address', '/32'],
    ['address = "0.0.0.0/0"', 'address', '0.0.0.0/0'],
    ['address = "127.0.0.1/8"', 'address', 'loopback'],
    ['address = 17', 'address', 'expected a string'],
  ])('refuses %s naming the file, key and value', (line, key, fragment) => {
    const e = err(good.replace(/address = .*\n/, `${line}\n`));
    expect(e.file).toBe(F);
    expect(e.key).toBe(key);
    expect(e.message).toContain(F);
    expect(e.message).toContain(`\`${key}\``);
    expect(e.message).toContain(fragment);
  });

  it.each([
    ['', 'must not be empty'],
    ['.', '"."'],
    ['..', '".."'],
    ['a/b', 'ASCII'],
    ['a:b', 'ASCII'],
    ['a b', 'ASCII'],
    ['tap%d', 'ASCII'],
    ['-br', 'must not start'],
    ['brü', 'ASCII'],
    ['br\ttab', 'ASCII'],
    ['br\u0001', 'ASCII'],
    ['a"b', 'ASCII'],
    ['a;b', 'ASCII'],
    ['a}b', 'ASCII'],
    ['a\\b', 'ASCII'],
    ['abcdefghijklmnop', 'at most 15 bytes'],
  ])('refuses bridge name %j', (name, fragment) => {
    const e = err(good.replace(/bridge = .*\n/, `bridge = ${JSON.stringify(name)}\n`));
    expect(e.key).toBe('bridge');
    expect(e.value).toBe(name);
    expect(e.message).toContain(fragment);
  });

  it('accepts a 15-byte bridge name', () => {
    expect(parseDefinition('o', F, good.replace('vnbr1', 'abcdefghijklmno')).bridge.name).toBe('abcdefghijklmno');
  });

  it('carries IPv6 addresses beside the IPv4 one (a string or an array), and the isolated mode', () => {
    const one = parseDefinition('o', F, good.replace('forward = "nat"', 'forward = "isolated"') + 'address6 = "fd00:1::1/64"\n');
    expect(one.addresses.map((a) => [a.family, a.cidr, a.address])).toEqual([
      [4, '10.10.0.0/24', '10.10.0.1'],
      [6, 'fd00:1::/64', 'fd00:1::1'],
    ]);
    expect(one.forward).toEqual({ mode: 'isolated' });
    const two = parseDefinition('o', F, good + 'address6 = ["fd00:1::1/64", "FD00:0002:0000::0001/64"]\n');
    expect(two.addresses.filter((a) => a.family === 6).map((a) => a.address)).toEqual(['fd00:1::1', 'fd00:2::1']);
  });

  it.each([
    ['address6 = "fd00:1::1"', 'IPv6 address with prefix length'],
    ['address6 = "10.1.0.1/24"', 'IPv6 address with prefix length'],
    ['address6 = "fe80::1/64"', 'linkLocal'],
    ['address6 = "fd00:1::/64"', 'subnet-router anycast'],
    ['address6 = "fd00:1::1/32"', 'prefix length must be 48..126'],
    ['address6 = ["fd00:1::1/64", "fd00:1::2/64"]', 'overlaps fd00:1::/64'],
    ['address6 = []', 'or an array of them'],
  ])('refuses %s', (line, why) => {
    const e = err(good + `${line}\n`);
    expect(e.key).toBe('address6');
    expect(e.message).toContain(why);
  });

  it('refuses an unknown key, listing the known ones', () => {
    const e = err(good + 'bridges = "typo"\n');
    expect(e.key).toBe('bridges');
    expect(e.message).toMatch(/unknown key; known keys are bridge, address, address6, dhcp-range/);
  });

  it.each([
    ['dhcp-range = ["10.10.1.10", "10.10.1.20"]', 'inside the network 10.10.0.0/24'],
    ['dhcp-range = ["10.10.0.50", "10.10.0.20"]', 'start must not be after end'],
    ['dhcp-range = ["10.10.0.0", "10.10.0.20"]', 'network'],
    ['dhcp-range = ["10.10.0.10", "10.10.0.255"]', 'broadcast'],
    ['dhcp-range = ["10.10.0.10"]', 'two addresses'],
    ['dhcp-range = ["x", "10.10.0.20"]', 'not an IPv4 address'],
    ['forward = "bogus"', 'expected one of "nat", "route", "isolated", "open", "bridge"'],
    ['autostart = 1', 'true or false'],
    ['nat-interface = "eth 0"', 'interface name may hold only'],
    ['nat-interface = "vnbr1"', "is the network's own bridge"],
    ['nat-address = "198.51.100.20-198.51.100.10"', 'start must not be after end'],
    ['nat-address = "198.51.100.1/24"', 'is not an IPv4 address'],
    ['nat-address = "fd00::1"', 'is not an IPv4 address'],
    ['nat-address = "224.0.0.1"', 'multicast address'],
    ['nat-ports = "0-100"', 'ports are 1..65535'],
    ['nat-ports = "1024-65536"', 'ports are 1..65535'],
    ['nat-ports = "2000-1000"', 'start must not be after end'],
    ['nat-ports = 1024', 'expected a port range'],
    ['on-demand = "yes"', 'true or false'],
    ['idle-down = -1', 'integer 0..86400'],
    ['idle-down = 1.5', 'integer'],
    ['standby = "warm"', '"none" or "stub"'],
    ['allow-users = ["ok", "bad name"]', 'not a valid user'],
    ['domain = "a..b"', 'DNS domain'],
    ['mtu = 20', '68..65535'],
  ])('refuses %s', (line, fragment) => {
    const key = line.split(' ')[0]!;
    const text = good.split('\n').filter((l) => !l.startsWith(`${key} `)).join('\n') + `\n${line}\n`;
    const e = err(text);
    expect(e.key).toBe(key);
    expect(e.message).toContain(fragment);
  });

  it('requires bridge and address', () => {
    expect(err('address = "10.0.0.1/24"').key).toBe('bridge');
    expect(err('bridge = "b"').key).toBe('address');
  });

  it('reports TOML syntax errors with the file', () => {
    const e = err('bridge = "unterminated\n');
    expect(e.message).toMatch(new RegExp(`^${F}: not valid TOML`));
  });
});

describe('readDefinitionSet', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vnet-defs-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('adds the built-in default, reports bad files, refuses overlaps and bridge clashes', async () => {
    const nd = path.join(dir, 'networks');
    mkdirSync(nd);
    writeFileSync(path.join(nd, 'office.toml'), good);
    writeFileSync(path.join(nd, 'lab.toml'), 'bridge = "vnbr2"\naddress = "10.10.0.129/25"\n');
    writeFileSync(path.join(nd, 'dup.toml'), 'bridge = "virbr0"\naddress = "10.20.0.1/24"\n');
    writeFileSync(path.join(nd, 'broken.toml'), 'bridge = "x"\naddress = "nope"\n');
    writeFileSync(path.join(nd, 'six1.toml'), 'bridge = "vn61"\naddress = "10.61.0.1/24"\naddress6 = "fd00:61::1/64"\n');
    writeFileSync(path.join(nd, 'six2.toml'), 'bridge = "vn62"\naddress = "10.62.0.1/24"\naddress6 = "fd00:61::1:1/112"\n');
    writeFileSync(path.join(nd, 'README'), 'not a definition');
    const { networks, errors } = readDefinitionSet(nd);
    expect([...networks.keys()].sort()).toEqual(['default', 'lab', 'six1']);
    expect(errors.get('six2')?.message).toContain('key `address6` = "fd00:61::1:0/112": subnet overlaps fd00:61::/64 of network "six1"');
    expect(errors.get('broken')?.message).toContain('broken.toml: key `address` = "nope"');
    expect(errors.get('dup')?.message).toContain('bridge is already used by network "default"');
    expect(errors.get('office')?.message).toContain('subnet overlaps 10.10.0.128/25 of network "lab"');
  });

  it('default.toml overrides the built-in default', async () => {
    const nd = path.join(dir, 'n2');
    mkdirSync(nd);
    writeFileSync(path.join(nd, 'default.toml'), 'bridge = "virbr9"\naddress = "10.9.0.1/24"\n');
    const { networks } = readDefinitionSet(nd);
    expect(networks.get('default')?.bridge.name).toBe('virbr9');
  });

  it('a missing folder means only the built-in default', async () => {
    const { networks, errors } = readDefinitionSet(path.join(dir, 'absent'));
    expect([...networks.keys()]).toEqual(['default']);
    expect(errors.size).toBe(0);
  });
});

describe('Definitions cache', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vnet-defcache-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  // files count as settled a second after their last change; this clock moves instead of the test waiting
  let skew = 0;
  const defs = new Definitions(dir, () => Date.now() + skew);
  const settle = () => void (skew += 1100);

  it('sees same-size rewrites, renames over, additions and removals; callers cannot change what others get', async () => {
    const f = path.join(dir, 'lab.toml');
    writeFileSync(f, 'bridge = "vnlab1"\naddress = "10.61.0.1/24"\n');
    settle();
    // the first load reads the file and caches the set; the second is served from the cache
    // (the same parsed definitions, in maps of its own); changing what the hit returned must
    // not change what the third load gets
    const first = defs.load();
    expect(first.networks.get('lab')?.bridge.name).toBe('vnlab1');
    const hit = defs.load();
    expect(hit.networks.get('lab')).toBe(first.networks.get('lab'));
    expect(hit.networks).not.toBe(first.networks);
    hit.networks.delete('lab');
    hit.networks.set('intruder', first.networks.get('default')!);
    hit.errors.set('lab', new DefinitionError(f, undefined, undefined, 'planted'));
    const third = defs.load();
    expect([...third.networks.keys()].sort()).toEqual(['default', 'lab']);
    expect(third.networks.get('lab')?.bridge.name).toBe('vnlab1');
    expect(third.errors.size).toBe(0);

    // same size, new content
    writeFileSync(f, 'bridge = "vnlab2"\naddress = "10.61.0.1/24"\n');
    expect(defs.load().networks.get('lab')?.bridge.name).toBe('vnlab2');
    settle();
    expect(defs.load().networks.get('lab')?.bridge.name).toBe('vnlab2');

    // replaced by rename (new inode), then settled
    writeFileSync(`${f}.new`, 'bridge = "vnlab3"\naddress = "10.61.0.1/24"\n');
    renameSync(`${f}.new`, f);
    settle();
    expect(defs.load().networks.get('lab')?.bridge.name).toBe('vnlab3');

    writeFileSync(path.join(dir, 'extra.toml'), 'bridge = "vnx1"\naddress = "10.62.0.1/24"\n');
    settle();
    expect([...defs.load().networks.keys()].sort()).toEqual(['default', 'extra', 'lab']);
    rmSync(f);
    expect([...defs.load().networks.keys()].sort()).toEqual(['default', 'extra']);
  });
});
