/**
 * Static hosts, lease times and DNS keys: what the definition parser takes and refuses (naming
 * the file, the key and the value), and the dnsmasq lines they become. The same networks served
 * by a real dnsmasq: test/integration/dns-hosts.test.ts.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { document } from '../../src/import/command.js';
import { importNetwork } from '../../src/import/libvirt.js';
import { parseXml } from '../../src/import/xml.js';
import { DnsmasqConfigError, dnsmasqConfig } from '../../src/dhcp/dnsmasq.js';
import { dnsLines, upstreamOf } from '../../src/dhcp/dnsmasq-dns.js';
import { hostLines } from '../../src/dhcp/dnsmasq-hosts.js';
import { specChanges } from '../../src/spec/changes.js';
import { DefinitionError, parseDefinition } from '../../src/spec/parse.js';
import type { NetworkSpec } from '../../src/spec/spec.js';

const F = '/etc/vnet/networks/lab.toml';
const BASE = `bridge = "virbr10"\naddress = "10.10.0.1/24"\naddress6 = "fd00:10::1/64"\ndhcp-range = ["10.10.0.100", "10.10.0.199"]\ndomain = "lab.test"\n`;
const paths = { runtimeDir: '/run/vnet', stateDir: '/var/lib/vnet' };

const parse = (extra: string) => parseDefinition('lab', F, BASE + extra);

function refused(extra: string): DefinitionError {
  try {
    parse(extra);
  } catch (e) {
    expect(e).toBeInstanceOf(DefinitionError);
    expect((e as Error).message.startsWith(`${F}: key \``)).toBe(true);
    return e as DefinitionError;
  }
  throw new Error('expected a DefinitionError');
}

const lines = (spec: NetworkSpec) => dnsmasqConfig(spec, paths, { user: 'vnet-dnsmasq', upstream: ['192.0.2.1'] }).split('\n');

const HOSTS = `
[[hosts]]
mac = "52:54:00:AA:00:01"
name = "web"
ip = "10.10.0.10"
dhcp-lease-time = 1800

[[hosts]]
mac = "52:54:00:aa:00:02"
name = "db"
ip = ["10.10.0.11", "fd00:10::11"]

[[hosts]]
name = "printer"
ip = "10.10.0.12"
`;

describe('[[hosts]] and dhcp-lease-time', () => {
  it('parses hosts by MAC and/or name, one address or one of each family, and lease times', () => {
    const s = parse(`dhcp-lease-time = 7200\n${HOSTS}`);
    expect(s.dhcp.leaseTime).toBe(7200);
    expect(s.dhcp.hosts).toEqual([
      { mac: '52:54:00:aa:00:01', name: 'web', ips: ['10.10.0.10'], leaseTime: 1800 },
      { mac: '52:54:00:aa:00:02', name: 'db', ips: ['10.10.0.11', 'fd00:10::11'] },
      { name: 'printer', ips: ['10.10.0.12'] },
    ]);
    expect(parse('dhcp-lease-time = 0\n').dhcp.leaseTime).toBe(0);
  });

  it('writes one dhcp-host line a host and the lease time into dhcp-range ("infinite" for 0)', () => {
    const s = parse(`dhcp-lease-time = 7200\n${HOSTS}`);
    expect(hostLines(s)).toEqual([
      'dhcp-host=52:54:00:aa:00:01,10.10.0.10,web,1800',
      'dhcp-host=52:54:00:aa:00:02,10.10.0.11,[fd00:10::11],db',
      'dhcp-host=10.10.0.12,printer',
      // in DNS from the start, for every asker, bare and under the domain
      'host-record=web,web.lab.test,10.10.0.10',
      'host-record=db,db.lab.test,10.10.0.11,fd00:10::11',
      'host-record=printer,printer.lab.test,10.10.0.12',
    ]);
    expect(lines(s)).toContain('dhcp-range=10.10.0.100,10.10.0.199,255.255.255.0,7200');
    expect(lines(parse('dhcp-lease-time = 0\n'))).toContain('dhcp-range=10.10.0.100,10.10.0.199,255.255.255.0,infinite');
    expect(lines(parse(''))).toContain('dhcp-range=10.10.0.100,10.10.0.199,255.255.255.0,1h');
  });

  it.each([
    ['[[hosts]]\nmac = "52:54:00:zz:00:01"\nip = "10.10.0.10"\n', 'hosts', /hosts\[0\]\.mac = "52:54:00:zz:00:01": is not a MAC address/],
    ['[[hosts]]\nmac = "01:00:5e:00:00:01"\nip = "10.10.0.10"\n', 'hosts', /multicast/],
    ['[[hosts]]\nmac = "52:54:00:aa:00:01"\nip = "10.10.0.10\\nserver=1.2.3.4"\n', 'hosts', /is not an IPv4 or IPv6 address/],
    ['[[hosts]]\nmac = "52:54:00:aa:00:01"\nname = "web,ignore"\nip = "10.10.0.10"\n', 'hosts', /hosts\[0\]\.name = "web,ignore": is not a valid DNS domain/],
    ['[[hosts]]\nmac = "52:54:00:aa:00:01"\nname = "ignore"\nip = "10.10.0.10"\n', 'hosts', /reads as a lease time, TTL or keyword/],
    ['[[hosts]]\nmac = "52:54:00:aa:00:01"\nname = "3600"\nip = "10.10.0.10"\n', 'hosts', /reads as a lease time/],
    ['[[hosts]]\nip = "10.10.0.10"\n', 'hosts', /needs `mac` or `name`/],
    ['[[hosts]]\nmac = "52:54:00:aa:00:01"\n', 'hosts', /`ip` is required/],
    ['[[hosts]]\nmac = "52:54:00:aa:00:01"\nip = ["10.10.0.10", "10.10.0.11"]\n', 'hosts', /two IPv4 addresses/],
    ['[[hosts]]\nmac = "52:54:00:aa:00:01"\nip = "10.10.0.10"\nipaddr = "x"\n', 'hosts', /unknown field `ipaddr`/],
    ['[[hosts]]\nmac = "52:54:00:aa:00:01"\nip = "10.10.0.10"\ndhcp-lease-time = 60\n', 'hosts', /dhcp-lease-time = 60: expected seconds, 120\.\./],
    ['dhcp-lease-time = 30\n', 'dhcp-lease-time', /expected seconds/],
    ['dhcp-lease-time = "1h"\n', 'dhcp-lease-time', /expected seconds/],
  ])('refuses %j (key %s)', (extra, key, msg) => {
    const e = refused(extra);
    expect(e.key).toBe(key);
    expect(e.message).toMatch(msg);
  });

  it.each([
    ['ip = "10.20.0.10"', 'hosts[0].ip', '10.20.0.10', /lies outside the network \(10\.10\.0\.1\/24\)/],
    ['ip = "10.10.0.1"', 'hosts[0].ip', '10.10.0.1', /the bridge's own address/],
    ['ip = "10.10.0.255"', 'hosts[0].ip', '10.10.0.255', /broadcast/],
    ['ip = "10.10.0.0"', 'hosts[0].ip', '10.10.0.0', /network address/],
    ['ip = "fd00:99::5"', 'hosts[0].ip', 'fd00:99::5', /lies outside the network \(fd00:10::1\/64\)/],
  ])('refuses an address outside or reserved: %s', (ip, key, value, msg) => {
    const e = refused(`[[hosts]]\nmac = "52:54:00:aa:00:01"\n${ip}\n`);
    expect(e.key).toBe(key);
    expect(e.value).toBe(value);
    expect(e.message).toMatch(msg);
    expect(e.message).toContain(`key \`${key}\` = "${value}"`);
  });

  it('refuses a duplicate MAC, address or name, naming both entries', () => {
    const two = (a: string, b: string) => `[[hosts]]\n${a}\n[[hosts]]\n${b}\n`;
    let e = refused(two('mac = "52:54:00:aa:00:01"\nip = "10.10.0.10"', 'mac = "52:54:00:AA:00:01"\nip = "10.10.0.11"'));
    expect([e.key, e.value]).toEqual(['hosts[1].mac', '52:54:00:aa:00:01']);
    expect(e.message).toMatch(/is hosts\[0\]'s mac too/);
    e = refused(two('mac = "52:54:00:aa:00:01"\nip = "10.10.0.10"', 'mac = "52:54:00:aa:00:02"\nip = "10.10.0.10"'));
    expect([e.key, e.value]).toEqual(['hosts[1].ip', '10.10.0.10']);
    e = refused(two('name = "web"\nip = "10.10.0.10"', 'name = "WEB"\nip = "10.10.0.11"'));
    expect([e.key, e.value]).toEqual(['hosts[1].name', 'WEB']);
  });

  it('refuses an IPv4 host on a network without dhcp-range, and any host with address = "auto"', () => {
    const noRange = `bridge = "virbr10"\naddress = "10.10.0.1/24"\n[[hosts]]\nmac = "52:54:00:aa:00:01"\nip = "10.10.0.10"\n`;
    expect(() => parseDefinition('lab', F, noRange)).toThrow(/hosts\[0\]\.ip` = "10\.10\.0\.10": the network hands out no IPv4 leases/);
    const auto = `bridge = "virbr10"\naddress = "auto"\n[[hosts]]\nmac = "52:54:00:aa:00:01"\nip = "10.200.0.10"\n`;
    expect(() => parseDefinition('lab', F, auto)).toThrow(/address = "auto"/);
  });
});

const RECORDS = `
dns-forwarders = [{ addr = "192.0.2.53" }, { addr = "192.0.2.54", domain = "corp.example" }]

[[dns-records]]
type = "host"
ip = "10.10.0.5"
names = ["files", "files.lab.test"]

[[dns-records]]
type = "srv"
service = "ldap"
protocol = "tcp"
domain = "lab.test"
target = "files.lab.test"
port = 389
weight = 5

[[dns-records]]
type = "srv"
service = "sip"
protocol = "udp"

[[dns-records]]
type = "txt"
name = "info"
value = 'lab network, "quoted" \\ #not-a-comment'
`;

describe('DNS: domain, records, forwarders, dns = false', () => {
  it('writes the domain, records and per-domain forwarders; plain forwarders replace the host\'s upstream', () => {
    const s = parse(RECORDS);
    expect(dnsLines(s)).toEqual([
      'domain=lab.test',
      'local=/lab.test/',
      'expand-hosts',
      'server=/corp.example/192.0.2.54',
      'host-record=files,files.lab.test,10.10.0.5',
      'srv-host=_ldap._tcp.lab.test,files.lab.test,389,0,5',
      'srv-host=_sip._udp',
      'txt-record=info,"lab network, \\"quoted\\" \\\\ #not-a-comment"',
    ]);
    expect(upstreamOf(s, ['192.0.2.1'])).toEqual(['192.0.2.53']);
    const l = lines(s);
    expect(l.filter((x) => x.startsWith('server='))).toEqual(['server=192.0.2.53', 'server=/corp.example/192.0.2.54']);
    // no forwarder of its own: the host's
    expect(lines(parse('')).filter((x) => x.startsWith('server='))).toEqual(['server=192.0.2.1']);
  });

  it('dns = false: port=0, no upstream servers and no DNS lines, the domain still for DHCP; DHCP stays', () => {
    const s = parse('dns = false\n');
    expect(s.dns.off).toBe(true);
    const l = lines(s);
    expect(l).toContain('port=0');
    expect(l).toContain('domain=lab.test');
    expect(l.filter((x) => /^(server|local|expand-hosts|host-record|srv-host|txt-record)/.test(x))).toEqual([]);
    expect(l.some((x) => x.startsWith('dhcp-range='))).toBe(true);
    expect(parse('dns = true\n').dns.off).toBeUndefined();
    expect(() => parse(`dns = false\n${RECORDS}`)).toThrow(/key `dns-forwarders`: has no server to answer with: the network has dns = false/);
  });

  it.each([
    ['dns = "no"\n', 'dns', /expected true or false/],
    ['dns-forwarders = ["192.0.2.53"]\n', 'dns-forwarders', /dns-forwarders\[0\] is not a table/],
    ['dns-forwarders = [{ addr = "192.0.2.53\\nport=0" }]\n', 'dns-forwarders', /expected an IPv4 or IPv6 address/],
    ['dns-forwarders = [{ addr = "0.0.0.0" }]\n', 'dns-forwarders', /unspecified address is no DNS server/],
    ['dns-forwarders = [{ addr = "10.10.0.1" }]\n', 'dns-forwarders[0].addr', /the network's own DNS server: it would ask itself/],
    ['dns-forwarders = [{ addr = "192.0.2.53", domain = "a/b" }]\n', 'dns-forwarders', /dns-forwarders\[0\]\.domain = "a\/b"/],
    ['[[dns-records]]\ntype = "mx"\n', 'dns-records', /dns-records\[0\]\.type = "mx": expected "host", "srv" or "txt"/],
    ['[[dns-records]]\ntype = "host"\nip = "10.10.0.5"\nnames = ["a,b"]\n', 'dns-records', /names = \["a,b"\]: "a,b" is not a valid DNS domain/],
    ['[[dns-records]]\ntype = "host"\nip = "10.10.0.5"\nnames = ["300"]\n', 'dns-records', /reads as a lease time, TTL/],
    ['[[dns-records]]\ntype = "host"\nnames = ["a"]\n', 'dns-records', /`ip` is required for type = "host"/],
    ['[[dns-records]]\ntype = "srv"\nservice = "ldap"\nprotocol = "sctp"\n', 'dns-records', /protocol = "sctp": expected "tcp" or "udp"/],
    ['[[dns-records]]\ntype = "srv"\nservice = "ldap,x"\nprotocol = "tcp"\n', 'dns-records', /service = "ldap,x"/],
    ['[[dns-records]]\ntype = "srv"\nservice = "ldap"\nprotocol = "tcp"\nport = 389\n', 'dns-records', /port = 389: needs a `target`/],
    ['[[dns-records]]\ntype = "srv"\nservice = "ldap"\nprotocol = "tcp"\ntarget = "x"\nport = 70000\n', 'dns-records', /port = 70000: expected an integer 0\.\.65535/],
    ['[[dns-records]]\ntype = "txt"\nname = "info"\nvalue = "a\\nserver=6.6.6.6"\n', 'dns-records', /value = "a\\nserver=6\.6\.6\.6": may hold printable ASCII only/],
    ['[[dns-records]]\ntype = "txt"\nname = "in fo"\nvalue = "a"\n', 'dns-records', /name = "in fo": is not a DNS name/],
    ['[[dns-records]]\ntype = "txt"\nname = "info"\nvalue = "a"\nttl = 5\n', 'dns-records', /unknown field `ttl` for type = "txt"/],
  ])('refuses %j (key %s)', (extra, key, msg) => {
    const e = refused(extra);
    expect(e.key).toBe(key);
    expect(e.message).toMatch(msg);
  });

  it('the dnsmasq writer refuses what slipped past (a spec made in code): no newline, comma or keyword reaches the file', () => {
    const s = parse('');
    const bad: Array<(x: NetworkSpec) => void> = [
      (x) => (x.dhcp.hosts = [{ mac: '52:54:00:aa:00:01', name: 'web\nserver=6.6.6.6', ips: ['10.10.0.10'] }]),
      (x) => (x.dhcp.hosts = [{ mac: '52:54:00:aa:00:01', name: 'infinite', ips: ['10.10.0.10'] }]),
      (x) => (x.dhcp.hosts = [{ mac: '52:54:00:aa:00:01,ignore', ips: ['10.10.0.10'] }]),
      (x) => (x.dhcp.hosts = [{ mac: '52:54:00:aa:00:01', ips: ['10.10.0.10,10.10.0.11'] }]),
      (x) => (x.dns.records = [{ type: 'txt', name: 'info', value: 'a\nb' }]),
      (x) => (x.dns.records = [{ type: 'host', ip: '10.10.0.5', names: ['a/b'] }]),
      (x) => (x.dns.forwarders = [{ addr: '1.2.3.4/#', domain: 'x' }]),
      (x) => (x.dns.records = [{ type: 'srv', service: 'x', protocol: 'tcp', target: 't', port: 1e6 }]),
    ];
    for (const b of bad) {
      const x = structuredClone(s);
      b(x);
      expect(() => lines(x)).toThrow(DnsmasqConfigError);
    }
  });

  it('names each changed key for `vnet reload`, applied live', () => {
    const before = parse('');
    expect(specChanges(before, parse(HOSTS))).toEqual([{ key: 'hosts', live: true }]);
    expect(specChanges(before, parse('dhcp-lease-time = 600\n'))).toEqual([{ key: 'dhcp-lease-time', live: true }]);
    expect(specChanges(before, parse('dns = false\n'))).toEqual([{ key: 'dns', live: true }]);
    expect(specChanges(before, parse(RECORDS)).map((c) => c.key)).toEqual(['dns-records', 'dns-forwarders']);
  });
});

describe('what `vnet import-libvirt` writes, the parser takes', () => {
  const imported = (xml: string) => importNetwork(parseXml(xml, 'test.xml'), 'test.xml');
  it('hosts, records, forwarders and lease times of a libvirt network parse as they were written', () => {
    const net = imported(readFileSync(path.join(import.meta.dirname, '__golden__', 'import', 'hosts-dns.xml'), 'utf8'));
    const spec = parseDefinition('lab', 'lab.toml', document(net));
    expect(spec.dhcp.hosts?.map((h) => h.name)).toEqual(['web', 'db', 'printer']);
    expect(spec.dns.records?.map((r) => r.type)).toEqual(['host', 'srv', 'srv', 'txt']);
    expect(spec.dns.forwarders).toEqual([{ addr: '192.0.2.53' }, { addr: '192.0.2.54', domain: 'corp.example' }]);
  });

  it('what the parser would refuse is named as not carried instead: a host name dnsmasq misreads, a fixed address without a range, SRV ports without a target, TXT beyond ASCII', () => {
    const net = imported(`<network><name>odd</name><bridge name='virbr9'/><domain name='odd.test'/>
      <dns><srv service='ldap' protocol='tcp' port='389'/><txt name='t' value='caf\u00e9'/><host ip='10.9.0.5'><hostname>3600</hostname></host></dns>
      <ip address='10.9.0.1' prefix='24'><dhcp><host mac='52:54:00:00:00:09' name='ignore' ip='10.9.0.9'/><host mac='52:54:00:00:00:0a' name='ok' ip='10.9.0.10'/></dhcp></ip></network>`);
    const reasons = net.notCarried.map((n) => `${n.element}: ${n.reason}`).join('\n');
    expect(reasons).toMatch(/<srv .*port, priority or weight without a target/);
    expect(reasons).toMatch(/<txt .*printable ASCII/);
    expect(reasons).toMatch(/hostname "3600" reads as a lease time/);
    expect(reasons).toMatch(/name='ignore'.*reads as a lease time, TTL or keyword/);
    expect(reasons).toMatch(/name='ok'.*needs a DHCP <range>|name='ok'.*has a DHCP <range>/);
    expect(() => parseDefinition('odd', 'odd.toml', document(net))).not.toThrow();
  });
});
