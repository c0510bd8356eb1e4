/**
 * address = "auto" in vnetd's terms: picks filled into the loaded definitions, a free subnet picked
 * before bring-up (host routes and addresses, other networks and other picks all count as used, the
 * network's own bridge does not), picks of deleted networks released; and vnet.toml, strict.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import type { DefinitionSet } from '../../src/config/networks.js';
import { DEFAULT_AUTO_POOL, loadSettings, parseSettings } from '../../src/config/vnet-toml.js';
import { cidrOf, parseSubnet } from '../../src/net/ip.js';
import type { HostAddressing } from '../../src/reconcile/conflicts.js';
import { SubnetAllocator } from '../../src/runtime/allocator.js';
import { AutoSubnets } from '../../src/runtime/auto-subnets.js';
import { DefinitionError, parseDefinition } from '../../src/spec/parse.js';
import { primary4, unresolved } from '../../src/spec/spec.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'vnet-auto-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const lines: string[] = [];
const log = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l).msg) });
const pool = parseSubnet(DEFAULT_AUTO_POOL)!;
const auto = (name: string, bridge = `vn${name}0`) => parseDefinition(name, `${name}.toml`, `bridge = "${bridge}"\naddress = "auto"\n`);
const fixed = (name: string, address: string) => parseDefinition(name, `${name}.toml`, `bridge = "vn${name}0"\naddress = "${address}"\n`);
const setOf = (...specs: ReturnType<typeof auto>[]): DefinitionSet => ({ networks: new Map(specs.map((s) => [s.name, s])), errors: new Map() });
const noHost: HostAddressing = { links: [], routes: [], addresses: [] };

function setup() {
  const allocator = new SubnetAllocator(path.join(dir, `alloc-${++n}.json`));
  return { allocator, auto: new AutoSubnets(allocator, pool, log) };
}

describe('AutoSubnets', () => {
  it('picks the first free /24 at bring-up: the bridge gets .1, DHCP .2 to .254', async () => {
    const { auto: a } = setup();
    const s = await a.prepare(auto('lab'), noHost, []);
    expect(primary4(s)?.cidr).toBe('10.200.0.0/24');
    expect(primary4(s)?.address).toBe('10.200.0.1');
    expect(s.dhcp.range4).toEqual({ start: '10.200.0.2', end: '10.200.0.254' });
    expect(lines.at(-1)).toBe('network "lab": address = "auto" picked 10.200.0.0/24');
  });

  it('counts host routes and addresses, other networks and other picks as used; not its own bridge', async () => {
    const { auto: a } = setup();
    await a.prepare(auto('first'), noHost, []);
    const host: HostAddressing = {
      links: [{ index: 5, name: 'tun0' }, { index: 6, name: 'vnlab0' }],
      routes: [
        { family: 4, dst: '10.200.1.0/24', oif: 5 },
        { family: 4, dst: '10.200.4.0/24', oif: 6 }, // its own bridge: its own subnet
        { family: 4, dst: '0.0.0.0/0', oif: 5 },
      ],
      addresses: [{ family: 4, index: 5, address: '10.200.2.9', prefix: 32 }],
    };
    const s = await a.prepare(auto('lab'), host, [fixed('office', '10.200.3.1/24')]);
    expect(primary4(s)?.cidr).toBe('10.200.4.0/24');
  });

  it('keeps a pick across restarts; picks again, and logs it, when the host took it meanwhile', async () => {
    const { allocator, auto: a } = setup();
    await a.prepare(auto('lab'), noHost, []);
    const again = new AutoSubnets(new SubnetAllocator(allocator.file), pool, log);
    const set = again.resolveSet(setOf(auto('lab')));
    expect(primary4(set.networks.get('lab')!)?.cidr).toBe('10.200.0.0/24');
    const vpn: HostAddressing = { links: [{ index: 5, name: 'tun0' }], routes: [{ family: 4, dst: '10.200.0.0/16', oif: 5 }], addresses: [] };
    await expect(again.prepare(set.networks.get('lab')!, vpn, [])).rejects.toThrow(/no free \/24 left in 10\.200\.0\.0\/16/);
    const narrow: HostAddressing = { ...vpn, routes: [{ family: 4, dst: '10.200.0.0/24', oif: 5 }] };
    expect(primary4(await again.prepare(set.networks.get('lab')!, narrow, []))?.cidr).toBe('10.200.1.0/24');
    expect(lines.at(-1)).toBe('network "lab": its subnet 10.200.0.0/24 is in use now; address = "auto" picked 10.200.1.0/24');
  });

  it('a pick another network now overlaps is not filled in (it is picked again at bring-up); without a pick the spec stays unresolved', async () => {
    const { auto: a } = setup();
    await a.prepare(auto('lab'), noHost, []);
    const set = a.resolveSet(setOf(fixed('office', '10.200.0.1/16'), auto('lab'), auto('new')));
    expect(unresolved(set.networks.get('lab')!)).toBe(true);
    expect(unresolved(set.networks.get('new')!)).toBe(true);
  });

  it('releases the picks of networks that are gone or no longer "auto", not of one whose file is broken now', async () => {
    const { allocator, auto: a } = setup();
    for (const name of ['gone', 'fixed', 'broken', 'kept']) await a.prepare(auto(name), noHost, []);
    const set = setOf(fixed('fixed', '10.99.0.1/24'), auto('kept'));
    set.errors.set('broken', new DefinitionError('broken.toml', undefined, undefined, 'oops'));
    await a.prune(set);
    expect(allocator.keys().sort()).toEqual(['admin:broken', 'admin:kept']);
  });
});

describe('vnet.toml', () => {
  it('is optional: the default pool is 10.200.0.0/16', () => {
    expect(cidrOf(loadSettings(path.join(dir, 'none')).autoPool)).toBe('10.200.0.0/16');
  });

  it('sets auto-pool, and refuses an unknown key or a bad value naming the file and key', () => {
    const f = path.join(dir, 'vnet.toml');
    writeFileSync(f, 'auto-pool = "10.77.0.0/20"\n');
    expect(cidrOf(loadSettings(dir).autoPool)).toBe('10.77.0.0/20');
    expect(() => parseSettings(f, 'auto-pol = "10.77.0.0/20"\n')).toThrow(`${f}: key \`auto-pol\`: unknown key; known keys are auto-pool, docker-compat`);
    expect(() => parseSettings(f, 'auto-pool = "10.77.0.1/20"\n')).toThrow(`${f}: key \`auto-pool\` = "10.77.0.1/20": expected an IPv4 subnet without host bits`);
    expect(() => parseSettings(f, 'auto-pool = "10.77.0.0/25"\n')).toThrow('prefix length must be 8..24');
    expect(() => parseSettings(f, 'auto-pool = "127.0.0.0/8"\n')).toThrow('127.0.0.0/8 is a loopback range');
    expect(() => parseSettings(f, 'auto-pool = [\n')).toThrow(`${f}: not valid TOML`);
  });
});
