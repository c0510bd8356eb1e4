/**
 * vnet's nft table against the real nft in a namespace: what vnet writes is what `nft -j list`
 * reads back (so drift is found by content), a change to one network touches only its own
 * objects, and the table never holds a half-made network.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Nft } from '../../src/firewall/nft.js';
import { chainsOf, firewallPart } from '../../src/firewall/rules.js';
import { baseIntact, changePart, partIntact, rebuild, removeStrays, ruleCount, simulate, strays, type TableState } from '../../src/firewall/table.js';
import { builtinDefault, parseDefinition } from '../../src/spec/parse.js';
import { cleanupAll, createNetns, tempDir, type Netns } from '../support/netns.js';

let ns: Netns;
let nft: Nft;

const nat = firewallPart(builtinDefault())!;
const iso = firewallPart(parseDefinition('lab', 'lab.toml', 'bridge = "vnlab0"\naddress = "10.20.0.1/24"\nforward = "isolated"\n'))!;
const other = firewallPart(parseDefinition('office', 'office.toml', 'bridge = "vnoff0"\naddress = "10.30.0.1/16"\n'))!;
const routed = firewallPart(parseDefinition('dmz', 'dmz.toml', 'bridge = "vndmz0"\naddress = "10.40.0.1/24"\naddress6 = "fd00:40::1/64"\nforward = "route"\n'))!;
const snatRange = firewallPart(
  parseDefinition('snat', 'snat.toml', 'bridge = "vnsn0"\naddress = "10.50.0.1/24"\nnat-interface = "up0"\nnat-address = "198.51.100.10-198.51.100.20"\nnat-ports = "20000-29999"\n'),
)!;
const snatOne = firewallPart(parseDefinition('snat1', 'snat1.toml', 'bridge = "vnsn1"\naddress = "10.51.0.1/24"\nnat-address = "198.51.100.9"\nnat-ports = "5000-5000"\n'))!;
const six = firewallPart(
  parseDefinition('six', 'six.toml', 'bridge = "vnsix0"\naddress = "10.60.0.1/24"\naddress6 = ["fd00:60::1/64", "fd00:61::1/64"]\nnat6 = true\nnat-ports = "30000-39999"\n'),
)!;
const masqPorts = firewallPart(parseDefinition('mp', 'mp.toml', 'bridge = "vnmp0"\naddress = "10.52.0.1/24"\nnat-ports = "40000-50000"\n'))!;

/** An Nft whose binary runs inside the test namespace. */
function nftIn(netns: Netns): Nft {
  const bin = path.join(tempDir('vnet-nft-'), 'nft');
  writeFileSync(bin, `#!/bin/sh\nexec ip netns exec ${netns.name} nft "$@"\n`, { mode: 0o755 });
  return new Nft({ binary: bin });
}

function same(a: TableState, b: TableState): void {
  expect([...b.chains].sort()).toEqual([...a.chains].sort());
  expect([...b.maps].map(([k, v]) => [k, v.def, [...v.elems].sort()]).sort()).toEqual([...a.maps].map(([k, v]) => [k, v.def, [...v.elems].sort()]).sort());
}

beforeAll(async () => {
  ns = await createNetns('vfw');
  nft = nftIn(ns);
});
afterAll(cleanupAll);

describe('vnet table in the real nft', () => {
  it('reads back exactly what it wrote, for NAT and isolated networks', async () => {
    const tx = rebuild([nat, iso]);
    await nft.apply(tx);
    const listed = await nft.list();
    expect(baseIntact(listed)).toBe(true);
    expect(partIntact(listed, nat)).toBe(true);
    expect(partIntact(listed, iso)).toBe(true);
    expect(strays(listed, [nat, iso])).toEqual({ chains: [], elements: [] });
    same(simulate({ exists: false, chains: new Map(), maps: new Map() }, tx), listed);
  });

  it('reads back exactly what it wrote for a routed network (v4 and v6) and NAT with nat-interface, nat-address and nat-ports', async () => {
    const parts = [nat, routed, snatRange, snatOne, masqPorts, six];
    try {
      const tx = rebuild(parts);
      await nft.apply(tx);
      const listed = await nft.list();
      expect(baseIntact(listed)).toBe(true);
      for (const p of parts) expect(partIntact(listed, p), p.bridge).toBe(true);
      expect(strays(listed, parts)).toEqual({ chains: [], elements: [] });
      same(simulate({ exists: false, chains: new Map(), maps: new Map() }, tx), listed);
      // and in nft's own words: what an admin reading `nft list` sees
      const text = await ns.run('nft', ['list', 'table', 'inet', 'vnet']);
      expect(text).toContain('oifname "up0" meta l4proto tcp snat ip to 198.51.100.10-198.51.100.20:20000-29999');
      expect(text).toContain('snat ip to 198.51.100.9:5000');
      expect(text).toContain('ip6 daddr fd00:40::/64 accept');
      expect(text).toMatch(/chain nat-vnmp0 \{[^}]*masquerade to :40000-50000/);
      // IPv6 with NAT66: DHCPv6 and ICMPv6 to the host, replies only into the bridge, masquerade out
      expect(text).toMatch(/chain in-vnsix0 \{[^}]*udp dport 547 accept[^}]*meta l4proto ipv6-icmp accept/);
      expect(text).toContain('ip6 daddr fd00:61::/64 ct state established,related accept');
      expect(text).toMatch(/chain nat6-vnsix0 \{[^}]*ip6 daddr ff00::\/8 return[^}]*oifname != "vnsix0" meta l4proto udp masquerade to :30000-39999/);
      expect(text).toContain('fd00:60::/64 : jump nat6-vnsix0');
    } finally {
      // the tests below start from the NAT and isolated networks
      await nft.apply(rebuild([nat, iso]));
    }
  });

  it('port forwards: reads back exactly what it wrote (nat and route), and a forward added changes its network\'s objects only', async () => {
    const fwd = '\n[[forwards]]\nproto = "tcp"\nhost-port = 8080\nguest = "10.60.0.5"\nguest-port = 80\n[[forwards]]\nproto = "udp"\nhost-port = 5353\nguest = "10.60.0.5"\n';
    const web = parseDefinition('web', 'web.toml', `bridge = "vnweb0"\naddress = "10.60.0.1/24"\n${fwd}`);
    const dmz = firewallPart(parseDefinition('dmz2', 'dmz2.toml', `bridge = "vndmz2"\naddress = "10.61.0.1/24"\nforward = "route"\n${fwd.replaceAll('8080', '8081').replaceAll('5353', '5354').replaceAll('10.60.', '10.61.')}`))!;
    const withForwards = firewallPart(web)!;
    try {
      const tx = rebuild([nat, withForwards, dmz]);
      await nft.apply(tx);
      const listed = await nft.list();
      expect(baseIntact(listed)).toBe(true);
      for (const p of [nat, withForwards, dmz]) expect(partIntact(listed, p), p.bridge).toBe(true);
      same(simulate({ exists: false, chains: new Map(), maps: new Map() }, tx), listed);
      const text = await ns.run('nft', ['list', 'table', 'inet', 'vnet']);
      expect(text).toContain('tcp dport 8080 dnat ip to 10.60.0.5:80');
      expect(text).toContain('udp dport 5353 dnat ip to 10.60.0.5:5353');
      expect(text).toMatch(/chain prerouting \{[^}]*meta nfproto ipv4 fib daddr type local tcp dport vmap @dnat_tcp/);
      expect(text).toMatch(/chain output \{[^}]*ip daddr != 127\.0\.0\.0\/8 fib daddr type local udp dport vmap @dnat_udp/);
      expect(text).toMatch(/chain nat-vndmz2 \{[^}]*ip daddr 10\.61\.0\.0\/24 ct status dnat masquerade/);
      // one more forward: a change of vnweb0's objects alone, read back as simulated
      const more = firewallPart({ ...web, portForwards: [...web.portForwards!, { proto: 'tcp', hostPort: 2222, guest: '10.60.0.6', guestPort: 22, origin: 'runtime' }] })!;
      const change = changePart(listed, chainsOf('vnweb0'), more);
      expect(JSON.stringify(change)).not.toMatch(/virbr0|vndmz2/);
      await nft.apply(change);
      const after = await nft.list();
      same(simulate(listed, change), after);
      expect(partIntact(after, more) && partIntact(after, nat) && partIntact(after, dmz)).toBe(true);
    } finally {
      await nft.apply(rebuild([nat, iso]));
    }
  });

  it('adds, replaces and removes one network touching only its own objects', async () => {
    const before = await nft.list();
    const add = changePart(before, chainsOf('vnoff0'), other);
    expect(JSON.stringify(add)).not.toContain('"virbr0"');
    await nft.apply(add);
    const after = await nft.list();
    same(simulate(before, add), after);
    expect(partIntact(after, other) && partIntact(after, nat) && partIntact(after, iso)).toBe(true);
    const rm = changePart(after, chainsOf('vnoff0'));
    await nft.apply(rm);
    const gone = await nft.list();
    same(simulate(after, rm), gone);
    expect(partIntact(gone, other)).toBe(false);
    expect(gone.chains.has('to-vnoff0')).toBe(false);
    expect(ruleCount(gone)).toBe(ruleCount(before));
  });

  it('notices an edited rule and a deleted map entry by content', async () => {
    await ns.run('nft', ['replace', 'rule', 'inet', 'vnet', 'nat-virbr0', 'handle', await handleOf('nat-virbr0', 2), 'meta', 'l4proto', 'tcp', 'masquerade']);
    const edited = await nft.list();
    expect(partIntact(edited, nat)).toBe(false);
    expect(partIntact(edited, iso)).toBe(true);
    await nft.apply(changePart(edited, chainsOf('virbr0'), nat));
    expect(partIntact(await nft.list(), nat)).toBe(true);
    await ns.run('nft', ['delete', 'element', 'inet', 'vnet', 'to_bridge', '{', 'vnlab0', '}']);
    expect(partIntact(await nft.list(), iso)).toBe(false);
  });

  it('removes strays: a chain and an entry no network accounts for', async () => {
    await nft.apply(rebuild([nat, iso]));
    await ns.run('nft', ['add', 'chain', 'inet', 'vnet', 'to-ghost0']);
    await ns.run('nft', ['add', 'element', 'inet', 'vnet', 'to_bridge', '{', 'ghost0', ':', 'jump', 'to-ghost0', '}']);
    const s = await nft.list();
    const st = strays(s, [nat, iso]);
    expect(st).toEqual({ chains: ['to-ghost0'], elements: [{ map: 'to_bridge', key: '"ghost0"' }] });
    await nft.apply(removeStrays(st));
    expect(strays(await nft.list(), [nat, iso])).toEqual({ chains: [], elements: [] });
  });

  it('an empty rebuild removes the table; a missing table lists as empty', async () => {
    await nft.apply(rebuild([]));
    const s = await nft.list();
    expect(s.exists).toBe(false);
    expect(baseIntact(s)).toBe(false);
  });
});

async function handleOf(chain: string, index: number): Promise<string> {
  const out = JSON.parse(await ns.run('nft', ['-j', '-a', 'list', 'chain', 'inet', 'vnet', chain])) as { nftables: Array<{ rule?: { handle: number } }> };
  return String(out.nftables.filter((x) => x.rule)[index]!.rule!.handle);
}
