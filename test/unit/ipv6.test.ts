/**
 * IPv6 with fakes and pure functions: the keys (address6, dhcp6-range, nat6) and their errors,
 * the dnsmasq lines (router advertisements, DHCPv6), forwarding with the host's accept_ra kept
 * at 2 and restored, and DHCPv6 leases in the lease file, in pages and in `vnet leases`.
 * Real traffic is test/integration/ipv6.test.ts.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { formatLeases } from '../../src/cli/format.js';
import { contributors } from '../../src/desired/desired.js';
import { dnsmasqConfig } from '../../src/dhcp/dnsmasq.js';
import { pageLeases, sortLeases } from '../../src/dhcp/lease-page.js';
import { macOfDuid, parseLeases } from '../../src/dhcp/leases.js';
import type { Lease } from '../../src/model.js';
import { emptyJournal, journalFromJson, journalToJson, type Journal } from '../../src/reconcile/journal.js';
import { Reconciler } from '../../src/reconcile/reconciler.js';
import { DefinitionError, parseDefinition } from '../../src/spec/parse.js';
import { Mutex, type Lock } from '../../src/sys/mutex.js';
import { fakeBackends } from '../support/fakes.js';

const base = 'bridge = "vnsix0"\naddress = "10.60.0.1/24"\n';
const parse = (extra: string) => parseDefinition('six', '/etc/vnet/networks/six.toml', base + extra);
const refused = (extra: string): string => {
  try {
    parse(extra);
  } catch (err) {
    expect(err).toBeInstanceOf(DefinitionError);
    return (err as Error).message;
  }
  throw new Error(`accepted: ${extra}`);
};

describe('the IPv6 keys', () => {
  it('address6 (one or several), dhcp6-range and nat6 go into the spec', () => {
    const s = parse('address6 = ["fd00:1::1/64", "fd00:2::1/64"]\ndhcp6-range = ["fd00:2::10", "fd00:2::FF"]\nnat6 = true\n');
    expect(s.addresses.filter((a) => a.family === 6).map((a) => a.address)).toEqual(['fd00:1::1', 'fd00:2::1']);
    expect(s.dhcp.range6).toEqual({ start: 'fd00:2::10', end: 'fd00:2::ff' });
    expect(s.forward).toMatchObject({ mode: 'nat', nat6: true });
    // the key order does not matter
    expect(parseDefinition('x', 'x.toml', 'nat6 = true\ndhcp6-range = ["fd00:1::10", "fd00:1::20"]\naddress6 = "fd00:1::1/64"\n' + base).dhcp.range6).toBeDefined();
  });

  it('refuses bad values naming file, key and value', () => {
    const file = '/etc/vnet/networks/six.toml: ';
    expect(refused('address6 = "fd00:1::1"\n')).toBe(`${file}key \`address6\` = "fd00:1::1": expected an IPv6 address with prefix length, e.g. "fd00:1::1/64"`);
    expect(refused('address6 = "fd00:1::1/64"\ndhcp6-range = ["fd00:1::10"]\n')).toContain('key `dhcp6-range` = ["fd00:1::10"]: expected two IPv6 addresses');
    expect(refused('address6 = "fd00:1::1/64"\ndhcp6-range = ["10.60.0.5", "fd00:1::20"]\n')).toContain('key `dhcp6-range` = ["10.60.0.5","fd00:1::20"]: start "10.60.0.5" is not an IPv6 address');
    expect(refused('address6 = "fd00:1::1/64"\ndhcp6-range = ["fd00:1::20", "fd00:1::10"]\n')).toContain('start must not be after end');
    expect(refused('dhcp6-range = ["fd00:1::10", "fd00:1::20"]\n')).toBe(`${file}key \`dhcp6-range\` = ["fd00:1::10","fd00:1::20"]: needs \`address6\`: dnsmasq hands out DHCPv6 leases from a subnet of the bridge`);
    expect(refused('address6 = "fd00:1::1/64"\ndhcp6-range = ["fd00:9::10", "fd00:9::20"]\n')).toContain('must lie inside one subnet of `address6` (fd00:1::/64)');
    expect(refused('address6 = "fd00:1::1/64"\ndhcp6-range = ["fd00:1::", "fd00:1::20"]\n')).toContain("must not include the bridge's own address fd00:1::1");
    expect(refused('nat6 = "yes"\n')).toContain('key `nat6` = "yes": expected true or false');
    expect(refused('nat6 = true\n')).toBe(`${file}key \`nat6\` = true: needs \`address6\`: there is no IPv6 subnet to translate`);
    expect(refused('address6 = ["fd00:1::1/64", "2001:db8:1::1/64"]\nnat6 = true\n')).toBe(
      `${file}key \`nat6\` = true: NAT66 is offered for unique local prefixes (fc00::/7, e.g. fd00:1::1/64) only; 2001:db8:1::1/64 of \`address6\` is not one: route it (leave nat6 out)`,
    );
    expect(refused('address6 = "fd00:1::1/64"\nforward = "route"\nnat6 = true\n')).toContain('key `nat6`: applies only to forward = "nat" (this network has forward = "route")');
    expect(refused('address6 = "fd00:1::1/64"\nnat6 = true\nforward = "isolated"\n')).toContain('applies only to forward = "nat"');
  });
});

describe('dnsmasq lines', () => {
  const conf = (extra: string) => dnsmasqConfig(parse(extra), { runtimeDir: '/run/vnet', stateDir: '/var/lib/vnet' }, { user: 'vnet-dnsmasq', upstream: [] });
  const v6lines = (text: string) => text.split('\n').filter((l) => /^(enable-ra|ra-param|dhcp-range=[0-9a-f]*:|dhcp-leasefile|dhcp-lease-max)/.test(l));

  it('no address6: no router advertisements', () => {
    expect(conf('')).not.toMatch(/enable-ra|ra-stateless/);
  });

  it('address6 alone: router advertisements for SLAAC on every prefix (stateless DHCPv6 for DNS)', () => {
    expect(v6lines(conf('address6 = ["fd00:1::1/64", "fd00:2::1/64"]\n'))).toEqual(['enable-ra', 'dhcp-range=fd00:1::,ra-stateless,64,1h', 'dhcp-range=fd00:2::,ra-stateless,64,1h']);
  });

  it('dhcp6-range: stateful DHCPv6 on its prefix, with the lease file even without an IPv4 range', () => {
    expect(v6lines(conf('address6 = ["fd00:1::1/64", "fd00:2::1/64"]\ndhcp6-range = ["fd00:2::10", "fd00:2::ff"]\n'))).toEqual([
      'enable-ra',
      'dhcp-range=fd00:1::,ra-stateless,64,1h',
      'dhcp-range=fd00:2::10,fd00:2::ff,64,1h',
      'dhcp-lease-max=253',
      'dhcp-leasefile=/var/lib/vnet/dnsmasq/six.leases',
    ]);
    // with an IPv4 range the lease file is written once, by the IPv4 part
    const both = conf('dhcp-range = ["10.60.0.10", "10.60.0.20"]\naddress6 = "fd00:1::1/64"\ndhcp6-range = ["fd00:1::10", "fd00:1::ff"]\n');
    expect(both.match(/^dhcp-leasefile=/gm)).toHaveLength(1);
  });

  it('isolated: prefixes advertised, the host never as a default router', () => {
    expect(v6lines(conf('address6 = "fd00:1::1/64"\nforward = "isolated"\n'))).toEqual(['enable-ra', 'ra-param=vnsix0,600,0', 'dhcp-range=fd00:1::,ra-stateless,64,1h']);
  });
});

describe('forwarding and the host\'s own router advertisements', () => {
  const log = pino({ level: 'silent' });
  const six = parse('address6 = "fd00:1::1/64"\n');
  const sixIsolated = parseDefinition('iso', 'iso.toml', 'bridge = "vniso0"\naddress = "10.61.0.1/24"\naddress6 = "fd00:3::1/64"\nforward = "isolated"\n');
  const one = (...names: string[]) => ({ names: new Set(names), sweep: false });

  function setup(journal: Journal = emptyJournal()) {
    const b = fakeBackends();
    // the host's uplink accepts RAs (the kernel's default); a second one does not; a bridge port is not the host's
    b.links.links.push({ index: 3, name: 'wlan0', up: true, mtu: 1500 }, { index: 4, name: 'port0', kind: 'veth', up: true, mtu: 1500, master: 99 });
    for (const [k, v] of [['up0', '1'], ['wlan0', '0'], ['port0', '1']]) b.sysctl.values.set(`net/ipv6/conf/${k}/accept_ra`, v!);
    b.sysctl.values.set('net/ipv6/conf/all/forwarding', '0');
    const saved: Journal[] = [];
    const r = new Reconciler({ backends: b, contributors: contributors({ runtimeDir: '/run/vnet', stateDir: '/var/lib/vnet' }), log, journal, save: async (j) => void saved.push(j) });
    const mutex = new Mutex();
    return { b, r, saved, run: <T>(fn: (lock: Lock) => Promise<T>) => mutex.run(fn) };
  }

  it('sets accept_ra 1 → 2 on the host\'s interfaces before IPv6 forwarding, journals it, restores both on down', async () => {
    const { b, r, saved, run } = setup();
    const { steps } = await run((l) => r.plan(l, [{ spec: six, level: 'up' }], one('six')));
    const keys = steps.flatMap((s) => (s.step.kind === 'set-sysctl' ? [`${s.step.key}=${s.step.value}`] : []));
    expect(keys.indexOf('net/ipv6/conf/up0/accept_ra=2')).toBeGreaterThanOrEqual(0);
    expect(keys.indexOf('net/ipv6/conf/up0/accept_ra=2')).toBeLessThan(keys.indexOf('net/ipv6/conf/all/forwarding=1'));
    expect(keys).toContain('net/ipv6/conf/vnsix0/accept_ra=0');
    expect(keys.filter((k) => /wlan0|port0|\/lo\//.test(k))).toEqual([]);

    await run((l) => r.converge(l, [{ spec: six, level: 'up' }], one('six'), 'rollback'));
    expect(b.sysctl.values.get('net/ipv6/conf/up0/accept_ra')).toBe('2');
    expect(b.sysctl.values.get('net/ipv6/conf/all/forwarding')).toBe('1');
    // what a restarted vnetd reads back: the old values, in the saved journal
    const after = journalFromJson(JSON.parse(JSON.stringify(journalToJson(saved.at(-1)!))));
    expect(Object.fromEntries(after.sysctls)).toMatchObject({ 'net/ipv6/conf/up0/accept_ra': '1', 'net/ipv6/conf/all/forwarding': '0' });
    // idempotent: nothing more to do
    expect((await run((l) => r.plan(l, [{ spec: six, level: 'up' }], one('six')))).steps).toEqual([]);

    const down = await run((l) => r.plan(l, [{ spec: six, level: 'down' }], one('six')));
    const order = down.steps.flatMap((s) => (s.step.kind === 'set-sysctl' ? [s.step.key] : []));
    expect(order.indexOf('net/ipv6/conf/all/forwarding')).toBeLessThan(order.indexOf('net/ipv6/conf/up0/accept_ra'));
    await run((l) => r.converge(l, [{ spec: six, level: 'down' }], one('six'), 'best-effort'));
    expect(b.sysctl.values.get('net/ipv6/conf/up0/accept_ra')).toBe('1');
    expect(b.sysctl.values.get('net/ipv6/conf/all/forwarding')).toBe('0');
    expect(r.journalNow().sysctls.size).toBe(0);
  });

  it('after a crash, a new vnetd with the saved journal keeps accept_ra at 2 while up and restores it on down', async () => {
    const first = setup();
    await first.run((l) => first.r.converge(l, [{ spec: six, level: 'up' }], one('six'), 'rollback'));
    const journal = journalFromJson(JSON.parse(JSON.stringify(journalToJson(first.saved.at(-1)!))));
    // same host, new reconciler (vnetd restarted); the bridge is still there
    const second = new Reconciler({ backends: first.b, contributors: contributors({ runtimeDir: '/run/vnet', stateDir: '/var/lib/vnet' }), log, journal, save: async () => undefined });
    expect((await first.run((l) => second.plan(l, [{ spec: six, level: 'up' }], one('six')))).steps).toEqual([]);
    await first.run((l) => second.converge(l, [{ spec: six, level: 'down' }], one('six'), 'best-effort'));
    expect(first.b.sysctl.values.get('net/ipv6/conf/up0/accept_ra')).toBe('1');
  });

  it('an interface that went away while up is forgotten on down, not an error', async () => {
    const { b, r, run } = setup();
    await run((l) => r.converge(l, [{ spec: six, level: 'up' }], one('six'), 'rollback'));
    b.links.links = b.links.links.filter((l) => l.name !== 'up0');
    b.sysctl.read = async (key) => (key.includes('/up0/') ? undefined : b.sysctl.values.get(key));
    const write = b.sysctl.write.bind(b.sysctl);
    b.sysctl.write = async (key, value) => {
      if (key.includes('/up0/')) throw Object.assign(new Error(`ENOENT: ${key}`), { code: 'ENOENT' });
      return write(key, value);
    };
    await run((l) => r.converge(l, [{ spec: six, level: 'down' }], one('six'), 'best-effort'));
    expect(r.journalNow().sysctls.size).toBe(0);
  });

  it('a host that forwarded IPv6 before vnet (its admin\'s router) keeps accept_ra as it is', async () => {
    const { b, r, run } = setup();
    b.sysctl.values.set('net/ipv6/conf/all/forwarding', '1');
    await run((l) => r.converge(l, [{ spec: six, level: 'up' }], one('six'), 'rollback'));
    expect(b.sysctl.values.get('net/ipv6/conf/up0/accept_ra')).toBe('1');
    await run((l) => r.converge(l, [{ spec: six, level: 'down' }], one('six'), 'best-effort'));
    expect(b.sysctl.values.get('net/ipv6/conf/all/forwarding')).toBe('1');
    expect(r.journalNow().sysctls.size).toBe(0);
  });

  it('an isolated network with IPv6 forwards nothing: neither forwarding nor accept_ra changes', async () => {
    const { b, r, run } = setup();
    await run((l) => r.converge(l, [{ spec: sixIsolated, level: 'up' }], one('iso'), 'rollback'));
    expect(b.sysctl.values.get('net/ipv6/conf/all/forwarding')).toBe('0');
    expect(b.sysctl.values.get('net/ipv6/conf/up0/accept_ra')).toBe('1');
  });
});

describe('DHCPv6 leases', () => {
  const FILE = [
    '1795655430 52:54:00:00:00:09 10.60.0.9 v4guest 01:52:54:00:00:00:09',
    'duid 00:01:00:01:2c:aa:bb:cc:52:54:00:ff:ff:ff',
    // DUID-LLT with the guest's MAC, DUID-LL, DUID-UUID (no MAC), a temporary address, no host name
    '1795655431 305419896 fd00:1::42 guest6 00:01:00:01:2c:aa:bb:cc:52:54:00:12:34:56',
    '1795655432 7 fd00:1::10 other 00:03:00:01:52:54:00:ab:cd:ef',
    '1795655433 1 fd00:1::9 * 00:04:11:22:33:44:55:66:77:88:99:00:aa:bb:cc:dd:ee:ff',
    '0 T3 fd00:1::abcd * *',
    '1795655434 99999999999 fd00:1::5 bad 00:01',
    '1795655434 1 fd00:1::g bad 00:01',
    '',
  ].join('\n');

  it('parses v6 lines: IAID, DUID as client id, the MAC a DUID-LL(T) holds; malformed lines counted', () => {
    const { leases, malformed } = parseLeases(FILE);
    expect(malformed).toBe(2);
    expect(leases.slice(1)).toEqual([
      { expires: 1795655431, mac: '52:54:00:12:34:56', ip: 'fd00:1::42', hostname: 'guest6', clientId: '00:01:00:01:2c:aa:bb:cc:52:54:00:12:34:56', iaid: '305419896' },
      { expires: 1795655432, mac: '52:54:00:ab:cd:ef', ip: 'fd00:1::10', hostname: 'other', clientId: '00:03:00:01:52:54:00:ab:cd:ef', iaid: '7' },
      { expires: 1795655433, mac: '', ip: 'fd00:1::9', hostname: '', clientId: '00:04:11:22:33:44:55:66:77:88:99:00:aa:bb:cc:dd:ee:ff', iaid: '1' },
      { expires: 0, mac: '', ip: 'fd00:1::abcd', hostname: '', clientId: '', iaid: 'T3' },
    ]);
    expect(macOfDuid('00:02:00:00:00:09:01')).toBe('');
  });

  it('pages: IPv4 leases first, then IPv6 by address; a v6 cursor resumes in place', () => {
    const sorted = sortLeases(parseLeases(FILE).leases);
    expect(sorted.map((l) => l.ip)).toEqual(['10.60.0.9', 'fd00:1::9', 'fd00:1::10', 'fd00:1::42', 'fd00:1::abcd']);
    const seen: Lease[] = [];
    let after: string | null = null;
    do {
      const page = pageLeases(sorted, { after, limit: 2 });
      seen.push(...page.leases);
      after = page.next;
    } while (after !== null);
    expect(seen).toEqual(sorted);
    expect(pageLeases(sorted, { after: 'fd00:1::9/', limit: 1 }).leases[0]!.ip).toBe('fd00:1::10');
    expect(() => pageLeases(sorted, { after: 'fd00:1::zz/' })).toThrow(/is not a cursor/);
  });

  it('`vnet leases` shows IAID and DUID for DHCPv6 leases, "-" where a MAC is unknown', () => {
    const text = formatLeases(sortLeases(parseLeases(FILE).leases));
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^MAC\s+IP\s+HOSTNAME\s+EXPIRES\s+IAID\s+DUID$/);
    expect(lines.find((l) => l.includes('fd00:1::42'))).toMatch(/^52:54:00:12:34:56\s+fd00:1::42\s+guest6\s+\S+\s+305419896\s+00:01:00:01:2c:aa:bb:cc:52:54:00:12:34:56$/);
    expect(lines.find((l) => l.includes('fd00:1::9 '))).toMatch(/^-\s+fd00:1::9\s+-/);
    expect(lines.find((l) => l.includes('10.60.0.9'))).toMatch(/\s-\s+-$/);
  });
});
