/**
 * Port forwards without a kernel: `[[forwards]]` in a definition, where a guest is, the rules a
 * network's forwards add to its part of the table, the run-time store (persisted, bounded, merged
 * into the definitions with one holder per host port) and who holds a port in /proc/net. The
 * real traffic is test/integration/port-forward.test.ts.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { firewallPart } from '../../src/firewall/rules.js';
import { PortForwardStore } from '../../src/runtime/port-forward-store.js';
import { specChanges } from '../../src/spec/changes.js';
import { DefinitionError, parseDefinition } from '../../src/spec/parse.js';
import { guestAddress, MAX_RUNTIME_FORWARDS, splitGuest } from '../../src/spec/port-forwards.js';
import type { NetworkSpec } from '../../src/spec/spec.js';
import { parseHolders } from '../../src/sys/listeners.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'vnet-pf-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const BASE = 'bridge = "vnweb0"\naddress = "10.60.0.1/24"\n';
const fwd = (body: string) => `\n[[forwards]]\n${body}\n`;
const web = (extra = '', head = BASE) => parseDefinition('web', 'web.toml', head + extra);
const refused = (text: string) => {
  try {
    web(text);
  } catch (err) {
    expect(err).toBeInstanceOf(DefinitionError);
    return (err as Error).message;
  }
  throw new Error('accepted');
};

describe('[[forwards]] in a definition', () => {
  it('reads proto, host-port, guest and guest-port (default: the host port)', () => {
    const s = web(fwd('proto = "tcp"\nhost-port = 8080\nguest = "10.60.0.5"\nguest-port = 80') + fwd('proto = "udp"\nhost-port = 5353\nguest = "10.60.0.5"'));
    expect(s.portForwards).toEqual([
      { proto: 'tcp', hostPort: 8080, guest: '10.60.0.5', guestPort: 80, origin: 'definition' },
      { proto: 'udp', hostPort: 5353, guest: '10.60.0.5', guestPort: 5353, origin: 'definition' },
    ]);
    expect(web().portForwards).toBeUndefined();
  });

  it.each([
    [fwd('proto = "sctp"\nhost-port = 1\nguest = "10.60.0.5"'), '`proto` = "sctp": expected "tcp" or "udp"'],
    [fwd('proto = "tcp"\nhost-port = 0\nguest = "10.60.0.5"'), '`host-port` = 0: expected a port 1..65535'],
    [fwd('proto = "tcp"\nhost-port = "80"\nguest = "10.60.0.5"'), '`host-port` = "80": expected a port 1..65535'],
    [fwd('proto = "tcp"\nhost-port = 80\nguest = "10.60.0.5"\nguest-port = 70000'), '`guest-port` = 70000'],
    [fwd('proto = "tcp"\nhost-port = 80\nguest = "10.60.0.5"\nport = 8'), 'forward #1: unknown key `port`; known keys are proto, host-port, guest, guest-port'],
    [fwd('proto = "tcp"\nhost-port = 80'), '`guest` = undefined'],
    [fwd('proto = "tcp"\nhost-port = 80\nguest = "10.61.0.5"'), 'guest 10.61.0.5 is outside network "web" (10.60.0.0/24)'],
    [fwd('proto = "tcp"\nhost-port = 80\nguest = "10.60.0.1"'), 'is the bridge\'s own address'],
    [fwd('proto = "tcp"\nhost-port = 80\nguest = "10.60.0.255"'), 'network or broadcast address'],
    [fwd('proto = "tcp"\nhost-port = 80\nguest = "fd00::5"'), 'is not an IPv4 address'],
    [fwd('proto = "tcp"\nhost-port = 80\nguest = "db"'), 'guest "db" is neither an IPv4 address nor a static host of network "web" (it has no [[hosts]]'],
    [fwd('proto = "tcp"\nhost-port = 80\nguest = "10.60.0.5"') + fwd('proto = "tcp"\nhost-port = 80\nguest = "10.60.0.6"'), 'tcp host port 80 is forwarded twice'],
    ['forwards = "tcp:80"\n', 'expected [[forwards]] tables'],
  ])('refuses %j naming the problem', (text, message) => {
    expect(refused(text)).toContain(message);
  });

  it('refuses forwards on a network that takes none (isolated, open, bridge), and more than 64', () => {
    expect(refused(`forward = "isolated"\n${fwd('proto = "tcp"\nhost-port = 80\nguest = "10.60.0.5"')}`)).toContain('forward = "isolated": port forwards need forward = "nat" or "route"');
    const many = Array.from({ length: 65 }, (_, i) => fwd(`proto = "tcp"\nhost-port = ${1000 + i}\nguest = "10.60.0.5"`)).join('');
    expect(refused(many)).toContain('65 forwards; a network has at most 64');
  });

  it('an edited [[forwards]] is a live change named "forwards"', () => {
    const before = web();
    const after = web(fwd('proto = "tcp"\nhost-port = 80\nguest = "10.60.0.5"'));
    expect(specChanges(before, after)).toEqual([{ key: 'forwards', live: true }]);
  });
});

describe('where a guest is', () => {
  it('an address inside the subnet, or a static host by name when the spec has [[hosts]]', () => {
    const s = web();
    expect(guestAddress(s, '10.60.0.7')).toEqual({ ip: '10.60.0.7' });
    const withHosts = { ...s, dhcp: { ...s.dhcp, hosts: [{ name: 'db', ips: ['fd00::5', '10.60.0.9'] }, { mac: '52:54:00:00:00:01', ips: ['10.60.0.8'] }] } } as NetworkSpec;
    expect(guestAddress(withHosts, 'db')).toEqual({ ip: '10.60.0.9' });
    expect(guestAddress(withHosts, 'web')).toEqual({ problem: expect.stringContaining('[[hosts]] names: db') });
  });

  it('GUEST[:PORT] as the CLI takes it', () => {
    expect(splitGuest('10.0.0.5:80')).toEqual({ guest: '10.0.0.5', port: 80 });
    expect(splitGuest('db')).toEqual({ guest: 'db' });
    expect(splitGuest('db:0')).toMatch(/port "0" in "db:0" is not a port/);
  });
});

describe('the rules of a network with forwards', () => {
  const s = web(fwd('proto = "tcp"\nhost-port = 8080\nguest = "10.60.0.5"\nguest-port = 80') + fwd('proto = "udp"\nhost-port = 5353\nguest = "10.60.0.5"'));
  const part = firewallPart(s)!;
  const rules = (name: string) => part.chains.find((c) => c.name === name)!.rules.map((r) => JSON.stringify(r));

  it('dnat-BR translates each forward and is reached by host port through dnat_tcp / dnat_udp', () => {
    expect(rules('dnat-vnweb0')).toEqual([
      '[{"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":8080}},{"dnat":{"family":"ip","addr":"10.60.0.5","port":80}}]',
      '[{"match":{"op":"==","left":{"payload":{"protocol":"udp","field":"dport"}},"right":5353}},{"dnat":{"family":"ip","addr":"10.60.0.5","port":5353}}]',
    ]);
    expect(part.elements.filter((e) => e.map.startsWith('dnat_'))).toEqual([
      { map: 'dnat_tcp', key: 8080, target: 'dnat-vnweb0' },
      { map: 'dnat_udp', key: 5353, target: 'dnat-vnweb0' },
    ]);
  });

  it('NAT: the translated connections are let in before the final reject, and hairpin is masqueraded', () => {
    const to = rules('to-vnweb0');
    expect(to.at(-1)).toBe('[{"reject":{"type":"icmpx","expr":"port-unreachable"}}]');
    expect(to.slice(2, 4)).toEqual([
      '[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":"10.60.0.5"}},{"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":80}},{"match":{"op":"in","left":{"ct":{"key":"status"}},"right":"dnat"}},{"accept":null}]',
      '[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":"10.60.0.5"}},{"match":{"op":"==","left":{"payload":{"protocol":"udp","field":"dport"}},"right":5353}},{"match":{"op":"in","left":{"ct":{"key":"status"}},"right":"dnat"}},{"accept":null}]',
    ]);
    expect(rules('nat-vnweb0').at(-1)).toBe('[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":{"prefix":{"addr":"10.60.0.0","len":24}}}},{"match":{"op":"in","left":{"ct":{"key":"status"}},"right":"dnat"}},{"masquerade":null}]');
  });

  it('route: a nat chain holding only the hairpin rule; without forwards none', () => {
    const routed = web(fwd('proto = "tcp"\nhost-port = 8080\nguest = "10.60.0.5"'), `${BASE}forward = "route"\n`);
    const p = firewallPart(routed)!;
    expect(p.chains.find((c) => c.name === 'nat-vnweb0')!.rules).toHaveLength(1);
    expect(p.elements.find((e) => e.map === 'nat4')).toEqual({ map: 'nat4', key: { prefix: { addr: '10.60.0.0', len: 24 } }, target: 'nat-vnweb0' });
    expect(firewallPart(web('', `${BASE}forward = "route"\n`))!.chains.map((c) => c.name)).not.toContain('nat-vnweb0');
  });

  it('a forward whose guest does not resolve inside the network is not applied', () => {
    const stale = { ...s, portForwards: [...s.portForwards!, { proto: 'tcp' as const, hostPort: 9000, guest: '10.99.0.5', guestPort: 9000, origin: 'runtime' as const }] };
    expect(firewallPart(stale)!.elements.filter((e) => e.map === 'dnat_tcp').map((e) => e.key)).toEqual([8080]);
    expect(firewallPart({ ...s, portForwards: [] })!.chains.map((c) => c.name)).not.toContain('dnat-vnweb0');
  });
});

describe('forwards added at run time', () => {
  const f = (hostPort: number, guest = '10.60.0.5') => ({ proto: 'tcp' as const, hostPort, guest, guestPort: 80 });

  it('are kept in one file, read back by the next vnetd, and merged into their network\'s definition', async () => {
    const file = path.join(dir, 'keep.json');
    const a = new PortForwardStore(file);
    await a.add('web', f(8080));
    await a.add('web', f(8081));
    expect(await a.remove('web', 'tcp', 8081)).toEqual(f(8081));
    expect(await a.remove('web', 'tcp', 9999)).toBeUndefined();
    const b = new PortForwardStore(file);
    expect(b.list('web')).toEqual([f(8080)]);
    const merged = b.merge({ networks: new Map([['web', web(fwd('proto = "udp"\nhost-port = 53\nguest = "10.60.0.5"'))]]), errors: new Map() });
    expect(merged.networks.get('web')!.portForwards!.map((x) => [x.proto, x.hostPort, x.origin])).toEqual([['udp', 53, 'definition'], ['tcp', 8080, 'runtime']]);
  });

  it('a definition naming a host port a forward already holds is refused, naming the holder', async () => {
    const store = new PortForwardStore(path.join(dir, 'clash.json'));
    await store.add('web', f(8080));
    const other = parseDefinition('api', '/etc/vnet/networks/api.toml', `bridge = "vnapi0"\naddress = "10.61.0.1/24"\n${fwd('proto = "tcp"\nhost-port = 8080\nguest = "10.61.0.5"')}`);
    const later = parseDefinition('zoo', '/etc/vnet/networks/zoo.toml', `bridge = "vnzoo0"\naddress = "10.62.0.1/24"\n${fwd('proto = "udp"\nhost-port = 53\nguest = "10.62.0.5"')}`);
    const dup = parseDefinition('zzz', '/etc/vnet/networks/zzz.toml', `bridge = "vnzzz0"\naddress = "10.63.0.1/24"\n${fwd('proto = "udp"\nhost-port = 53\nguest = "10.63.0.5"')}`);
    const set = store.merge({ networks: new Map([['web', web()], ['api', other], ['zoo', later], ['zzz', dup]]), errors: new Map() });
    expect([...set.networks.keys()].sort()).toEqual(['web', 'zoo']);
    expect(set.errors.get('api')!.message).toBe(
      '/etc/vnet/networks/api.toml: key `forwards` = "tcp 8080 → 10.61.0.5:8080": tcp host port 8080 is taken: network "web" forwards it (tcp 8080 → 10.60.0.5:80, added with `vnet forward add`)',
    );
    expect(set.errors.get('zzz')!.message).toContain('udp host port 53 is taken: network "zoo" forwards it (udp 53 → 10.62.0.5:53, in /etc/vnet/networks/zoo.toml)');
  });

  it('are bounded: the store refuses more than it keeps, and never reads an oversized file', async () => {
    const file = path.join(dir, 'full.json');
    const many = Array.from({ length: MAX_RUNTIME_FORWARDS }, (_, i) => f(1000 + i));
    writeFileSync(file, JSON.stringify({ version: 1, networks: { web: many } }));
    const store = new PortForwardStore(file);
    expect(store.count()).toBe(MAX_RUNTIME_FORWARDS);
    await expect(store.add('web', f(9))).rejects.toThrow(`vnet keeps at most ${MAX_RUNTIME_FORWARDS} forwards added at run time`);
    writeFileSync(file, 'x'.repeat(300 * 1024));
    expect(new PortForwardStore(file).problem()).toMatch(/larger than 262144 bytes/);
  });

  it('a file vnetd cannot understand is reported and left alone: nothing applies, nothing is added over it', async () => {
    const file = path.join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ version: 1, networks: { web: [{ proto: 'tcp', hostPort: 80, guest: 5 }] } }));
    const store = new PortForwardStore(file);
    expect(store.problem()).toMatch(/bad\.json cannot be used \(a forward of "web" is malformed.*move it aside/);
    await expect(store.add('web', f(8080))).rejects.toThrow(/cannot be used/);
    expect(readFileSync(file, 'utf8')).toContain('"guest":5');
    expect(store.merge({ networks: new Map([['web', web()]]), errors: new Map() }).networks.get('web')!.portForwards).toBeUndefined();
  });
});

describe('who holds a port (/proc/net)', () => {
  const tcp = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 514 1 0 100 0 0 10 0
   1: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 515 1 0 100 0 0 10 0
   2: 0200A8C0:1F90 0100A8C0:C350 01 00000000:00000000 00:00000000 00000000  1000        0 516 1 0 100 0 0 10 0
`;
  const tcp6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   105        0 1 1 0 100 0 0 10 0
`;

  it('TCP: listening sockets only (not a connection that happens to use the port), v4 and v6, with their owner', () => {
    expect(parseHolders(tcp, 'tcp', 8080)).toEqual([{ local: '0.0.0.0:8080', uid: 0 }]);
    expect(parseHolders(tcp, 'tcp', 8081)).toEqual([{ local: '127.0.0.1:8081', uid: 1000 }]);
    expect(parseHolders(tcp6, 'tcp', 8081)).toEqual([{ local: '[::]:8081', uid: 105 }]);
    expect(parseHolders(tcp, 'tcp', 53)).toEqual([]);
  });

  it('UDP: any socket bound to the port', () => {
    const udp = tcp.replace(/ 0A /g, ' 07 ');
    expect(parseHolders(udp, 'udp', 8080)).toHaveLength(2);
    expect(parseHolders('header\n garbage line\n', 'udp', 8080)).toEqual([]);
  });
});
