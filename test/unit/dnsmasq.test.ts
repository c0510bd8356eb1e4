import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  DnsmasqConfigError,
  confFilePath,
  dnsmasqArgs,
  dnsmasqConfig,
  dnsmasqTestArgs,
  leaseFilePath,
  prefixToMask,
} from '../../src/dhcp/dnsmasq.js';
import { builtinDefault } from '../../src/spec/parse.js';
import type { NetworkSpec } from '../../src/spec/spec.js';

const paths = { runtimeDir: '/run/vnet', stateDir: '/var/lib/vnet' };

/** The fields these tests vary, flat; anything else is the built-in default's. */
interface Over {
  name?: string;
  bridge?: string;
  domain?: string;
  ipv4?: { address: string; prefix: number; network: string; cidr: string };
  dhcpRange?: { start: string; end: string } | undefined;
  dhcpLeaseMax?: number;
}

function defaultNet(over: Over = {}): NetworkSpec {
  const s = builtinDefault();
  if (over.name !== undefined) s.name = over.name;
  if (over.bridge !== undefined) s.bridge = { ...s.bridge, name: over.bridge };
  if (over.domain !== undefined) s.dns = { domain: over.domain };
  if (over.ipv4) s.addresses = [{ family: 4, ...over.ipv4 }];
  if ('dhcpRange' in over) {
    if (over.dhcpRange) s.dhcp.range4 = over.dhcpRange;
    else delete s.dhcp.range4;
  }
  if (over.dhcpLeaseMax !== undefined) s.dhcp.leaseMax = over.dhcpLeaseMax;
  return s;
}

const lines = (text: string) => text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));

afterEach(() => {
  vi.unstubAllEnvs();
});

describe('dnsmasqConfig', () => {
  it('writes the built-in default network exactly', () => {
    const text = dnsmasqConfig(defaultNet(), paths);
    expect(text.endsWith('\n')).toBe(true);
    expect(lines(text)).toEqual([
      'strict-order',
      'bind-interfaces',
      'interface=virbr0',
      'except-interface=lo',
      'listen-address=192.168.122.1',
      'no-hosts',
      'no-resolv',
      'user=vnet-dnsmasq',
      'group=vnet-dnsmasq',
      'pid-file=',
      'quiet-dhcp',
      'quiet-dhcp6',
      'quiet-ra',
      'dhcp-range=192.168.122.2,192.168.122.254,255.255.255.0,1h',
      'dhcp-no-override',
      'dhcp-authoritative',
      'no-ping',
      'dhcp-lease-max=253',
      'dhcp-leasefile=/var/lib/vnet/dnsmasq/default.leases',
    ]);
  });

  it('includes nothing that reads host files or runs scripts, and turns off the default pid file', () => {
    for (const net of [defaultNet({ domain: 'vm.test' }), defaultNet({ dhcpRange: undefined })]) {
      const text = dnsmasqConfig(net, paths);
      for (const key of ['conf-file', 'conf-dir', 'addn-hosts', 'dhcp-script', 'dhcp-hostsfile', 'servers-file']) {
        expect(text).not.toMatch(new RegExp(`^${key}=`, 'm'));
      }
      // empty: no pid file at all (the default is the host-wide /run/dnsmasq.pid)
      expect(lines(text).filter((l) => l.startsWith('pid-file'))).toEqual(['pid-file=']);
    }
  });

  it('reads no resolv file (no inotify instance: 128 per user) and forwards to the servers vnetd gives, in order', () => {
    const bare = lines(dnsmasqConfig(defaultNet(), paths));
    expect(bare).toContain('no-resolv');
    expect(bare.filter((l) => l.startsWith('server='))).toEqual([]);
    for (const key of ['resolv-file', 'dhcp-hostsdir', 'dhcp-optsdir', 'hostsdir']) expect(bare.join('\n')).not.toMatch(new RegExp(`^${key}=`, 'm'));
    const l = lines(dnsmasqConfig(defaultNet(), paths, { upstream: ['127.0.0.53', '2001:db8::1', 'fe80::1%eth0'] }));
    expect(l.filter((x) => /^(no-resolv|server=)/.test(x))).toEqual(['no-resolv', 'server=127.0.0.53', 'server=2001:db8::1', 'server=fe80::1%eth0']);
  });

  it.each([['8.8.8.8\nconf-file=/etc/x'], ['1.2.3.4,5'], ['example.org'], ['/a/1.2.3.4'], ['fe80::1%a b'], ['']])('refuses the upstream server %j', (bad) => {
    expect(() => dnsmasqConfig(defaultNet(), paths, { upstream: ['192.0.2.1', bad] })).toThrow(DnsmasqConfigError);
    expect(() => dnsmasqConfig(defaultNet(), paths, { upstream: ['192.0.2.1', bad] })).toThrow(/upstream\[1\]/);
  });

  it('a network without DHCP has no dhcp-* lines, but still serves DNS on its bridge only', () => {
    const text = dnsmasqConfig(defaultNet({ dhcpRange: undefined }), paths);
    expect(text).not.toMatch(/^dhcp-/m);
    expect(lines(text)).toContain('interface=virbr0');
    expect(lines(text)).toContain('listen-address=192.168.122.1');
  });

  it('serves the domain locally when one is set', () => {
    const l = lines(dnsmasqConfig(defaultNet({ domain: 'vm.example.org' }), paths));
    expect(l).toContain('domain=vm.example.org');
    expect(l).toContain('local=/vm.example.org/');
  });

  it('runs as vnet-dnsmasq, or the account VNET_DNSMASQ_USER names (user and group of that name)', () => {
    expect(lines(dnsmasqConfig(defaultNet(), paths)).filter((l) => /^(user|group)=/.test(l))).toEqual(['user=vnet-dnsmasq', 'group=vnet-dnsmasq']);
    vi.stubEnv('VNET_DNSMASQ_USER', 'vnet-test-missing');
    expect(lines(dnsmasqConfig(defaultNet(), paths)).filter((l) => /^(user|group)=/.test(l))).toEqual(['user=vnet-test-missing', 'group=vnet-test-missing']);
    vi.stubEnv('VNET_DNSMASQ_USER', 'bad\nuser=root');
    expect(() => dnsmasqConfig(defaultNet(), paths)).toThrow(/user.*newline/);
  });

  it('uses the given user and group', () => {
    const l = lines(dnsmasqConfig(defaultNet(), paths, { user: 'vnet-dns', group: 'vnet-dns' }));
    expect(l).toContain('user=vnet-dns');
    expect(l).toContain('group=vnet-dns');
  });

  it('derives the netmask from the prefix', () => {
    expect(prefixToMask(24)).toBe('255.255.255.0');
    expect(prefixToMask(16)).toBe('255.255.0.0');
    expect(prefixToMask(30)).toBe('255.255.255.252');
    expect(prefixToMask(20)).toBe('255.255.240.0');
    const l = lines(
      dnsmasqConfig(
        defaultNet({
          ipv4: { address: '10.1.0.1', prefix: 20, network: '10.1.0.0', cidr: '10.1.0.0/20' },
          dhcpRange: { start: '10.1.0.10', end: '10.1.15.200' },
        }),
        paths,
      ),
    );
    expect(l).toContain('dhcp-range=10.1.0.10,10.1.15.200,255.255.240.0,1h');
  });

  it.each([
    ['domain', { domain: 'vm.test\ndhcp-script=/tmp/evil' }, /domain.*newline or control/],
    ['domain', { domain: 'vm.test,10.0.0.0/8' }, /domain.*comma/],
    ['domain', { domain: 'a..b' }, /domain.*not a DNS domain/],
    ['bridge', { bridge: 'virbr0\nconf-dir=/etc/dnsmasq.d' }, /bridge.*newline or control/],
    ['bridge', { bridge: '-virbr0' }, /bridge.*interface name/],
    ['bridge', { bridge: 'a-very-long-bridge-name' }, /bridge.*interface name/],
    ['name', { name: '../../etc/x' }, /name.*network name/],
    ['name', { name: 'x\u0000y' }, /name.*control/],
    ['ipv4.address', { ipv4: { address: '192.168.122.1 #', prefix: 24, network: '', cidr: '' } }, /ipv4\.address/],
    ['dhcpRange.start', { dhcpRange: { start: '192.168.122.2,proxy', end: '192.168.122.9' } }, /dhcpRange\.start/],
    ['dhcpRange.end', { dhcpRange: { start: '192.168.122.2', end: '192.168.122.300' } }, /dhcpRange\.end.*IPv4/],
    ['dhcpLeaseMax', { dhcpLeaseMax: 0 }, /dhcpLeaseMax.*positive integer/],
  ] as Array<[string, Over, RegExp]>)('refuses a bad %s with a clear error', (_key, over, msg) => {
    let err: unknown;
    try {
      dnsmasqConfig(defaultNet(over), paths);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DnsmasqConfigError);
    expect((err as Error).name).toBe('DnsmasqConfigError');
    expect((err as Error).message).toMatch(msg);
  });

  it('refuses unsafe paths and accounts', () => {
    expect(() => dnsmasqConfig(defaultNet(), { runtimeDir: '/run/vnet', stateDir: 'relative' })).toThrow(/stateDir.*absolute/);
    expect(() => dnsmasqConfig(defaultNet(), { runtimeDir: '/run/vnet', stateDir: '/var/lib/v net' })).toThrow(/stateDir/);
    expect(() => dnsmasqConfig(defaultNet(), { runtimeDir: '/run/vnet', stateDir: '/var/lib/v\nnet' })).toThrow(/newline/);
    expect(() => dnsmasqConfig(defaultNet(), paths, { user: 'root\nuser=x' })).toThrow(/user.*newline/);
    expect(() => dnsmasqConfig(defaultNet(), paths, { group: 'Wheel Group' })).toThrow(/group/);
  });
});

describe('paths and arguments', () => {
  it('places leases and config per network', () => {
    expect(leaseFilePath('/var/lib/vnet', 'office')).toBe('/var/lib/vnet/dnsmasq/office.leases');
    expect(confFilePath('/run/vnet', 'office')).toBe('/run/vnet/dnsmasq/office.conf');
    expect(() => leaseFilePath('/var/lib/vnet', '../x')).toThrow(DnsmasqConfigError);
  });

  it('runs dnsmasq in the foreground, logging to stderr, with only our file', () => {
    expect(dnsmasqArgs('/run/vnet/dnsmasq/default.conf')).toEqual([
      '--keep-in-foreground',
      '--log-facility=-',
      '--conf-file=/run/vnet/dnsmasq/default.conf',
    ]);
    expect(dnsmasqTestArgs('/run/vnet/dnsmasq/default.conf')).toEqual(['--test', '--conf-file=/run/vnet/dnsmasq/default.conf']);
    expect(() => dnsmasqArgs('x.conf')).toThrow(/confPath.*absolute/);
  });
});
