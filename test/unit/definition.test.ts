import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { builtinDefault, DefinitionError, parseDefinition } from '../../src/config/definition.js';
import { loadDefinitions } from '../../src/config/networks.js';

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
      bridge: 'vnbr1',
      ipv4: { address: '10.10.0.1', prefix: 24, network: '10.10.0.0', cidr: '10.10.0.0/24' },
      dhcpRange: { start: '10.10.0.10', end: '10.10.0.99' },
      forward: 'nat',
      onDemand: false,
      idleDown: 30,
      standby: 'stub',
      allowUsers: ['alice'],
      allowGroups: ['kvm'],
      domain: 'office.test',
      mtu: 1400,
      dhcpLeaseMax: 50,
    });
  });

  it('fills defaults and leaves DHCP off without dhcp-range', () => {
    const def = parseDefinition('x', F, 'bridge = "b0"\naddress = "10.1.2.1/24"\n');
    expect(def.dhcpRange).toBeUndefined();
    expect(def).toMatchObject({ forward: 'nat', onDemand: true, idleDown: 60, standby: 'none', dhcpLeaseMax: 253 });
  });

  it('the built-in default is libvirt-like virbr0', () => {
    expect(builtinDefault()).toMatchObject({
      name: 'default',
      source: 'built-in',
      bridge: 'virbr0',
      ipv4: { cidr: '192.168.122.0/24', address: '192.168.122.1' },
      dhcpRange: { start: '192.168.122.2', end: '192.168.122.254' },
      onDemand: true,
      idleDown: 60,
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
    expect(parseDefinition('o', F, good.replace('vnbr1', 'abcdefghijklmno')).bridge).toBe('abcdefghijklmno');
  });

  it('refuses an unknown key, listing the known ones', () => {
    const e = err(good + 'bridges = "typo"\n');
    expect(e.key).toBe('bridges');
    expect(e.message).toMatch(/unknown key; known keys are bridge, address, dhcp-range/);
  });

  it.each([
    ['dhcp-range = ["10.10.1.10", "10.10.1.20"]', 'inside the network 10.10.0.0/24'],
    ['dhcp-range = ["10.10.0.50", "10.10.0.20"]', 'start must not be after end'],
    ['dhcp-range = ["10.10.0.0", "10.10.0.20"]', 'network'],
    ['dhcp-range = ["10.10.0.10", "10.10.0.255"]', 'broadcast'],
    ['dhcp-range = ["10.10.0.10"]', 'two addresses'],
    ['dhcp-range = ["x", "10.10.0.20"]', 'not an IPv4 address'],
    ['forward = "route"', 'not supported yet'],
    ['forward = "bogus"', 'expected "nat"'],
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

describe('loadDefinitions', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vnet-defs-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('adds the built-in default, reports bad files, refuses overlaps and bridge clashes', async () => {
    const nd = path.join(dir, 'networks');
    mkdirSync(nd);
    writeFileSync(path.join(nd, 'office.toml'), good);
    writeFileSync(path.join(nd, 'lab.toml'), 'bridge = "vnbr2"\naddress = "10.10.0.129/25"\n');
    writeFileSync(path.join(nd, 'dup.toml'), 'bridge = "virbr0"\naddress = "10.20.0.1/24"\n');
    writeFileSync(path.join(nd, 'broken.toml'), 'bridge = "x"\naddress = "nope"\n');
    writeFileSync(path.join(nd, 'README'), 'not a definition');
    const { networks, errors } = await loadDefinitions(nd);
    expect([...networks.keys()].sort()).toEqual(['default', 'lab']);
    expect(errors.get('broken')?.message).toContain('broken.toml: key `address` = "nope"');
    expect(errors.get('dup')?.message).toContain('bridge is already used by network "default"');
    expect(errors.get('office')?.message).toContain('subnet overlaps 10.10.0.128/25 of network "lab"');
  });

  it('default.toml overrides the built-in default', async () => {
    const nd = path.join(dir, 'n2');
    mkdirSync(nd);
    writeFileSync(path.join(nd, 'default.toml'), 'bridge = "virbr9"\naddress = "10.9.0.1/24"\n');
    const { networks } = await loadDefinitions(nd);
    expect(networks.get('default')?.bridge).toBe('virbr9');
  });

  it('a missing folder means only the built-in default', async () => {
    const { networks, errors } = await loadDefinitions(path.join(dir, 'absent'));
    expect([...networks.keys()]).toEqual(['default']);
    expect(errors.size).toBe(0);
  });
});

describe('loadDefinitions cache', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vnet-defcache-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  // The cache trusts a file's stat only once it is a second old (SETTLE_MS in networks.ts),
  // by Date.now(). Instead of waiting that second, the clock it reads is moved: settle() puts
  // it 1.1 s past the real time (everything written so far is old enough), write() back to
  // the real time (what was just written is fresh), as the real clock would have it.
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });
  const settle = () => vi.setSystemTime(vi.getRealSystemTime() + 1100);
  const write = (file: string, text: string) => {
    writeFileSync(file, text);
    vi.setSystemTime(vi.getRealSystemTime());
  };

  it('sees same-size rewrites, renames over, additions and removals; callers cannot change what others get', async () => {
    const f = path.join(dir, 'lab.toml');
    write(f, 'bridge = "vnlab1"\naddress = "10.61.0.1/24"\n');
    settle();
    // the first load reads the file and caches the set; the second is served from the cache
    // (the same parsed definitions, in maps of its own); changing what the hit returned must
    // not change what the third load gets
    const first = await loadDefinitions(dir);
    expect(first.networks.get('lab')?.bridge).toBe('vnlab1');
    const hit = await loadDefinitions(dir);
    expect(hit.networks.get('lab')).toBe(first.networks.get('lab'));
    expect(hit.networks).not.toBe(first.networks);
    hit.networks.delete('lab');
    hit.networks.set('intruder', first.networks.get('default')!);
    hit.errors.set('lab', new DefinitionError(f, undefined, undefined, 'planted'));
    const third = await loadDefinitions(dir);
    expect([...third.networks.keys()].sort()).toEqual(['default', 'lab']);
    expect(third.networks.get('lab')?.bridge).toBe('vnlab1');
    expect(third.errors.size).toBe(0);

    // same size, new content
    write(f, 'bridge = "vnlab2"\naddress = "10.61.0.1/24"\n');
    expect((await loadDefinitions(dir)).networks.get('lab')?.bridge).toBe('vnlab2');
    settle();
    expect((await loadDefinitions(dir)).networks.get('lab')?.bridge).toBe('vnlab2');

    // replaced by rename (new inode), then settled
    write(`${f}.new`, 'bridge = "vnlab3"\naddress = "10.61.0.1/24"\n');
    renameSync(`${f}.new`, f);
    settle();
    expect((await loadDefinitions(dir)).networks.get('lab')?.bridge).toBe('vnlab3');

    write(path.join(dir, 'extra.toml'), 'bridge = "vnx1"\naddress = "10.62.0.1/24"\n');
    settle();
    expect([...(await loadDefinitions(dir)).networks.keys()].sort()).toEqual(['default', 'extra', 'lab']);
    rmSync(f);
    expect([...(await loadDefinitions(dir)).networks.keys()].sort()).toEqual(['default', 'extra']);
  });
});
