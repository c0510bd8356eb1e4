/**
 * `vnet doctor`'s checks as pure judges over facts: each condition gives its diagnosis and fix, a
 * healthy host gives ok, and what could not be read is said (never taken for "fine" or "broken").
 */
import { describe, expect, it } from 'vitest';
import { pathsFromEnv } from '../../src/config/paths.js';
import { defaultSettings } from '../../src/config/vnet-toml.js';
import type { NetworkStatus } from '../../src/daemon/service.js';
import { dnsmasqMode, includesVnet, judgeAppArmor, type AppArmorFacts } from '../../src/doctor/apparmor.js';
import { judgeBinaries, searchPath } from '../../src/doctor/binaries.js';
import { foreignDropFound, judgeBrNetfilter } from '../../src/doctor/br-netfilter.js';
import { judgeBridgeAcl, type BridgeAclFacts } from '../../src/doctor/bridge-acl.js';
import { holdsWildcard53, judgeDnsPort, parseProcNet } from '../../src/doctor/dns-port.js';
import { judgeFirewalld } from '../../src/doctor/firewalld.js';
import { judgeForeignDrops, type ForeignDropFacts } from '../../src/doctor/foreign-drops.js';
import { judgeForwarding } from '../../src/doctor/forwarding.js';
import { parseLegacyFilter } from '../../src/doctor/legacy-iptables.js';
import { bridgeHelperOf, judgeQemuConf, sessionUsers } from '../../src/doctor/qemu-conf.js';
import type { Scope } from '../../src/doctor/scope.js';
import { judgeSelinux } from '../../src/doctor/selinux.js';
import { judgeSubnets } from '../../src/doctor/subnets.js';
import { judgeTun } from '../../src/doctor/tun.js';
import { judgeVnetd } from '../../src/doctor/vnetd.js';
import { printable } from '../../src/doctor/finding.js';
import { formatFindings } from '../../src/doctor/format.js';
import { builtinDefault, parseDefinition } from '../../src/spec/parse.js';
import type { NetworkSpec } from '../../src/spec/spec.js';

const paths = pathsFromEnv({});
const def = builtinDefault();
const lab = parseDefinition('lab', '/etc/vnet/networks/lab.toml', 'bridge = "vnlab0"\naddress = "10.20.0.1/24"\nforward = "isolated"\n');
const six = parseDefinition('six', '/etc/vnet/networks/six.toml', 'bridge = "vnsix0"\naddress = "10.30.0.1/24"\naddress6 = "fd00:30::1/64"\n');
const routed = parseDefinition('rt', '/etc/vnet/networks/rt.toml', 'bridge = "vnrt0"\naddress = "10.40.0.1/24"\nforward = "route"\n');

function st(spec: NetworkSpec, state: NetworkStatus['state'], more: Partial<NetworkStatus> = {}): NetworkStatus {
  return { name: spec.name, bridge: spec.bridge.name, state, subnet: '', address: '', addresses: [], forward: spec.forward.mode, onDemand: true, pinned: false, leases: 0, taps: [], source: spec.source, ...more };
}

function scope(networks: NetworkSpec[], status: NetworkStatus[] | string = [], over: Partial<Scope> = {}): Scope {
  return {
    networks,
    status: typeof status === 'string' ? { unreachable: status } : new Map(status.map((s) => [s.name, s])),
    settings: defaultSettings(),
    paths,
    ...over,
  };
}

const bad = (fs: ReturnType<typeof judgeTun>) => fs.filter((f) => !f.ok);

describe('forwarding', () => {
  it('off while a NAT network is up: an error with the sysctl; off with nothing up: a note (vnetd turns it on)', () => {
    const [f] = judgeForwarding({ ipv4: '0', ipv6: '0' }, scope([def], [st(def, 'up')]));
    expect(f).toMatchObject({ check: 'forwarding', ok: false, severity: 'error' });
    expect(f!.problem).toContain('net.ipv4.ip_forward = 0');
    expect(f!.problem).toContain('default (virbr0)');
    expect(f!.fix).toContain('sudo sysctl -w net.ipv4.ip_forward=1');
    expect(judgeForwarding({ ipv4: '0', ipv6: '0' }, scope([def], [st(def, 'down')]))).toEqual([expect.objectContaining({ ok: true, severity: 'info' })]);
    expect(judgeForwarding({ ipv4: '1', ipv6: '0' }, scope([def], [st(def, 'up')]))).toEqual([expect.objectContaining({ ok: true, severity: 'ok' })]);
  });

  it('an isolated network needs no forwarding; an IPv6 network that forwards needs IPv6 forwarding', () => {
    expect(bad(judgeForwarding({ ipv4: '0', ipv6: '0' }, scope([lab], [st(lab, 'up')])))).toEqual([]);
    const [f] = bad(judgeForwarding({ ipv4: '1', ipv6: '0' }, scope([six])));
    expect(f).toMatchObject({ severity: 'warning' });
    expect(f!.problem).toContain('six (vnsix0)');
    expect(f!.fix).toContain('net.ipv6.conf.all.forwarding = 1');
  });

  it('a sysctl it could not read is a note, not a verdict', () => {
    expect(judgeForwarding({ ipv4: { unreadable: 'permission denied' }, ipv6: '1' }, scope([def]))).toEqual([expect.objectContaining({ ok: true, severity: 'info', problem: 'could not read net.ipv4.ip_forward: permission denied' })]);
  });
});

describe('foreign forward drops', () => {
  const docker = { family: 'ip', table: 'filter', chain: 'FORWARD', owner: 'docker' as const };
  const facts = (drops: ForeignDropFacts['nft'], legacy: ForeignDropFacts['legacy'] = []): ForeignDropFacts => ({ nft: drops, legacy });

  it("Docker's drop: docker-compat = true is the fix; with it and DOCKER-USER there, a note", () => {
    const [f] = judgeForeignDrops(facts({ drops: [docker], dockerUser: true }), scope([def]));
    expect(f).toMatchObject({ check: 'foreign-drop', ok: false, severity: 'error' });
    expect(f!.problem).toContain("Docker's table ip filter, chain FORWARD has policy drop");
    expect(f!.fix).toContain("echo 'docker-compat = true' | sudo tee -a /etc/vnet/vnet.toml");
    const compat = scope([def], [], { settings: { ...defaultSettings(), dockerCompat: true } });
    expect(judgeForeignDrops(facts({ drops: [docker], dockerUser: true }), compat)).toEqual([expect.objectContaining({ ok: true, severity: 'info' })]);
    // docker-compat without a DOCKER-USER chain (Docker's nftables backend): accept rules by hand
    expect(judgeForeignDrops(facts({ drops: [docker], dockerUser: false }), compat)[0]!.fix).toContain('sudo nft insert rule ip filter FORWARD iifname virbr0 accept');
  });

  it("ufw's drop: `ufw route allow` for each bridge (and out for routed networks)", () => {
    const [f] = judgeForeignDrops(facts({ drops: [{ ...docker, owner: 'ufw' }], dockerUser: false }), scope([def, routed]));
    expect(f!.problem).toContain("ufw's default forward policy drops");
    expect(f!.fix).toContain('sudo ufw route allow in on virbr0 && sudo ufw route allow in on vnrt0 && sudo ufw route allow out on vnrt0');
  });

  it('iptables-legacy: a DROP policy nft cannot see, and dropping rules; other legacy rules are a note', () => {
    const l = parseLegacyFilter('ip', '-P INPUT ACCEPT\n-P FORWARD DROP\n-P OUTPUT ACCEPT\n-A FORWARD -i eth9 -j REJECT --reject-with icmp-port-unreachable\n-A INPUT -j ACCEPT\n');
    expect(l).toEqual({ family: 'ip', forwardPolicy: 'DROP', forwardDrops: ['-A FORWARD -i eth9 -j REJECT --reject-with icmp-port-unreachable'], rules: 2 });
    const fs = judgeForeignDrops(facts({ drops: [], dockerUser: false }, [l]), scope([def]));
    expect(fs.map((f) => f.severity)).toEqual(['error', 'error']);
    expect(fs[0]!.problem).toContain("iptables-legacy's FORWARD chain has policy DROP");
    expect(fs[0]!.fix).toContain('sudo iptables-legacy -I FORWARD -i virbr0 -j ACCEPT');
    expect(judgeForeignDrops(facts({ drops: [], dockerUser: false }, [parseLegacyFilter('ip6', '-P FORWARD ACCEPT\n-A INPUT -j ACCEPT\n')]), scope([def]))).toEqual([expect.objectContaining({ ok: true, severity: 'info' })]);
  });

  it('nothing dropping: ok; a ruleset it could not read: a note', () => {
    expect(judgeForeignDrops(facts({ drops: [], dockerUser: false }), scope([def]))).toEqual([expect.objectContaining({ ok: true, severity: 'ok' })]);
    expect(judgeForeignDrops(facts({ unreadable: 'nft: Operation not permitted' }), scope([def]))).toEqual([expect.objectContaining({ ok: true, severity: 'info' })]);
  });
});

describe('br_netfilter', () => {
  it('on, with another firewall dropping forwarded traffic: guests of one bridge are cut apart; alone: a note; module absent: ok', () => {
    const drops: ForeignDropFacts = { nft: { drops: [{ family: 'ip', table: 'filter', chain: 'FORWARD', owner: 'docker' }], dockerUser: true }, legacy: [] };
    expect(foreignDropFound(drops, scope([lab]))).toBe(true);
    expect(foreignDropFound(drops, scope([lab], [], { settings: { ...defaultSettings(), dockerCompat: true } }))).toBe(false);
    const [f] = judgeBrNetfilter({ iptables: '1', ip6tables: '0' }, true, scope([lab]));
    expect(f).toMatchObject({ ok: false, severity: 'error' });
    expect(f!.fix).toContain('sudo sysctl -w net.bridge.bridge-nf-call-iptables=0');
    expect(judgeBrNetfilter({ iptables: '1', ip6tables: '1' }, false, scope([lab]))[0]).toMatchObject({ ok: true, severity: 'info' });
    expect(judgeBrNetfilter({ iptables: undefined, ip6tables: undefined }, true, scope([lab]))[0]).toMatchObject({ ok: true, severity: 'ok' });
  });
});

describe('port 53 on the wildcard address', () => {
  const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 4343 1 0000000000000000 100 0 0 10 0
   2: 017AA8C0:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 4444 1 0000000000000000 100 0 0 10 0
`;
  it('parses /proc/net/tcp and keeps only wildcard port-53 holders (not 127.0.0.1, not a bridge address)', () => {
    const socks = parseProcNet(TCP, 'tcp', 4);
    expect(socks.map((s) => [s.address, s.port, s.state, s.inode])).toEqual([['00000000', 53, '0A', 4242], ['0100007F', 53, '0A', 4343], ['017AA8C0', 53, '0A', 4444]]);
    expect(socks.filter(holdsWildcard53).map((s) => s.inode)).toEqual([4242]);
  });

  it('names the holder and the fix for a system dnsmasq; TCP is an error, UDP alone a warning; no DNS network, no finding', () => {
    const sockets = parseProcNet(TCP, 'tcp', 4).filter(holdsWildcard53);
    const [f] = judgeDnsPort({ sockets, holders: new Map([[4242, { pid: 77, comm: 'dnsmasq' }]]), unreadable: [], partial: false }, scope([def]));
    expect(f).toMatchObject({ check: 'dns-port', ok: false, severity: 'error' });
    expect(f!.problem).toContain('TCP 0.0.0.0:53 by dnsmasq (pid 77)');
    expect(f!.fix).toContain('bind-interfaces');
    const udp = [{ ...sockets[0]!, proto: 'udp' as const, state: '07' }];
    expect(judgeDnsPort({ sockets: udp, holders: new Map(), unreadable: [], partial: true }, scope([def]))[0]).toMatchObject({ severity: 'warning' });
    expect(judgeDnsPort({ sockets: udp, holders: new Map(), unreadable: [], partial: true }, scope([def]))[0]!.problem).toContain('run doctor as root to name it');
    expect(judgeDnsPort({ sockets, holders: new Map(), unreadable: [], partial: false }, scope([]))[0]).toMatchObject({ ok: true });
  });
});

describe('AppArmor', () => {
  const profile = '#include <tunables/global>\n/usr/sbin/dnsmasq flags=(attach_disconnected) {\n  #include <local/usr.sbin.dnsmasq>\n}\n';
  const base: AppArmorFacts = { loaded: '/usr/sbin/dnsmasq (enforce)\n/usr/bin/man (enforce)\n', profile, local: '# Site-specific additions\n', vnetRules: undefined };

  it('reads the mode of a loaded dnsmasq profile and whether the hook includes vnet\'s rules', () => {
    expect(dnsmasqMode(base.loaded as string)).toBe('enforce');
    expect(dnsmasqMode('dnsmasq (complain)\n')).toBe('complain');
    expect(dnsmasqMode('/usr/sbin/dnsmasq//libvirt_leaseshelper (enforce)\n')).toBeUndefined();
    expect(includesVnet('include if exists <local/vnet-dnsmasq>\n')).toBe(true);
    expect(includesVnet('#include <local/vnet-dnsmasq>\n')).toBe(true);
    expect(includesVnet('# include nothing\n')).toBe(false);
  });

  it("enforcing without vnet's include: an error with `make install` and the reload; with it: ok; complain mode: a note", () => {
    const [f] = judgeAppArmor(base, scope([def]));
    expect(f).toMatchObject({ check: 'apparmor', ok: false, severity: 'error' });
    expect(f!.problem).toContain('/etc/apparmor.d/local/vnet-dnsmasq is missing');
    expect(f!.fix).toContain('sudo apparmor_parser -r /etc/apparmor.d/usr.sbin.dnsmasq');
    const fixed = { ...base, local: 'include if exists <local/vnet-dnsmasq>\n', vnetRules: '/var/lib/vnet/dnsmasq/*.leases rwk,\n' };
    expect(judgeAppArmor(fixed, scope([def]))).toEqual([expect.objectContaining({ ok: true, severity: 'ok' })]);
    expect(judgeAppArmor({ ...base, loaded: 'dnsmasq (complain)\n' }, scope([def]))[0]).toMatchObject({ ok: true, severity: 'info' });
  });

  it('no AppArmor, or no dnsmasq profile loaded: ok; profiles unreadable but the profile installed: a warning', () => {
    expect(judgeAppArmor({ loaded: undefined, profile: undefined, local: undefined, vnetRules: undefined }, scope([def]))[0]).toMatchObject({ severity: 'ok' });
    expect(judgeAppArmor({ ...base, loaded: '/usr/bin/man (enforce)\n' }, scope([def]))[0]).toMatchObject({ severity: 'ok' });
    expect(judgeAppArmor({ ...base, loaded: { unreadable: 'permission denied' } }, scope([def]))[0]).toMatchObject({ ok: false, severity: 'warning' });
  });
});

describe('SELinux', () => {
  it("enforcing, dnsmasq confined and vnet's folders unlabelled: the semanage lines; labelled or SELinux off: ok", () => {
    const facts = { enforce: '1', dnsmasqLabel: 'system_u:object_r:dnsmasq_exec_t:s0', folders: [{ path: '/run/vnet/dnsmasq', label: 'system_u:object_r:var_run_t:s0' }, { path: '/var/lib/vnet/dnsmasq', label: 'system_u:object_r:dnsmasq_lease_t:s0' }] };
    const [f] = judgeSelinux(facts, scope([def]));
    expect(f).toMatchObject({ check: 'selinux', ok: false, severity: 'error' });
    expect(f!.problem).toContain('/run/vnet/dnsmasq: var_run_t');
    expect(f!.fix).toBe("sudo semanage fcontext -a -t dnsmasq_var_run_t '/run/vnet/dnsmasq(/.*)?' && sudo semanage fcontext -a -t dnsmasq_lease_t '/var/lib/vnet/dnsmasq(/.*)?' && sudo restorecon -R /run/vnet/dnsmasq /var/lib/vnet/dnsmasq");
    expect(judgeSelinux({ ...facts, enforce: '0' }, scope([def]))[0]).toMatchObject({ ok: true, severity: 'info' });
    expect(judgeSelinux({ ...facts, folders: [] }, scope([def]))[0]).toMatchObject({ severity: 'ok' });
    expect(judgeSelinux({ enforce: undefined, dnsmasqLabel: undefined, folders: [] }, scope([def]))[0]).toMatchObject({ severity: 'ok' });
  });
});

describe('programs, /dev/net/tun', () => {
  it('a missing nft or dnsmasq is an error naming the package; iptables only with docker-compat', () => {
    const found = { nft: undefined, dnsmasq: '/usr/sbin/dnsmasq' };
    const [f] = judgeBinaries({ found, searched: ['/usr/bin'] }, scope([def]));
    expect(f).toMatchObject({ check: 'programs', ok: false, severity: 'error' });
    expect(f!.problem).toContain('nft is not installed (not found in /usr/bin)');
    expect(f!.fix).toContain('sudo apt install nftables');
    expect(judgeBinaries({ found: { nft: '/usr/sbin/nft', dnsmasq: '/usr/sbin/dnsmasq' }, searched: [] }, scope([def], [], { settings: { ...defaultSettings(), dockerCompat: true } }))[0]!.problem).toContain('iptables is not installed');
    expect(searchPath({ PATH: '/bin:relative' }, true)).toEqual(['/bin']);
    expect(searchPath({ PATH: '/bin' }, false)).toEqual(['/bin', '/usr/local/sbin', '/usr/sbin', '/sbin']);
  });

  it('tun missing or not 10:200 is an error; an unusual mode a note', () => {
    expect(judgeTun({ path: '/dev/net/tun', stat: undefined })[0]).toMatchObject({ ok: false, severity: 'error', fix: expect.stringContaining('sudo modprobe tun') });
    expect(judgeTun({ path: '/dev/net/tun', stat: { isCharacterDevice: false, major: 0, minor: 0, mode: 0o100644 } })[0]!.problem).toContain('is not the tun device');
    // another misc device (10:229 is /dev/fuse) put in its place
    expect(judgeTun({ path: '/dev/net/tun', stat: { isCharacterDevice: true, major: 10, minor: 229, mode: 0o20666 } })[0]).toMatchObject({ ok: false, severity: 'error' });
    expect(judgeTun({ path: '/dev/net/tun', stat: { isCharacterDevice: true, major: 10, minor: 200, mode: 0o20600 } })[0]).toMatchObject({ ok: true, severity: 'info' });
    expect(judgeTun({ path: '/dev/net/tun', stat: { isCharacterDevice: true, major: 10, minor: 200, mode: 0o20666 } })[0]).toMatchObject({ severity: 'ok' });
  });
});

describe("bridge.conf and gnome-boxes' first line", () => {
  const base: BridgeAclFacts = {
    bridgeConfPath: '/etc/qemu/bridge.conf',
    vnetConfPath: '/etc/qemu/vnet.conf',
    bridgeConf: 'allow virbr0\ninclude /etc/qemu/vnet.conf\n',
    vnetConf: 'allow virbr0\n',
    decisions: new Map([['virbr0', { allowed: true, denied: false, reason: '' }]]),
  };
  it('the include and the first line in place: ok', () => {
    expect(judgeBridgeAcl(base, scope([def], [st(def, 'up')]))).toEqual([expect.objectContaining({ severity: 'ok' })]);
  });
  it('no include: the stock helper refuses; the fix adds the line', () => {
    const [f] = judgeBridgeAcl({ ...base, bridgeConf: 'allow virbr0\nallow br0\n' }, scope([def], [st(def, 'up')]));
    expect(f).toMatchObject({ ok: false, severity: 'warning' });
    expect(f!.problem).toContain('has no line `include /etc/qemu/vnet.conf`');
    expect(f!.fix).toContain("echo 'include /etc/qemu/vnet.conf' | sudo tee -a /etc/qemu/bridge.conf");
  });
  it("a first line that is not `allow virbr0`: gnome-boxes' warning", () => {
    const fs = judgeBridgeAcl({ ...base, bridgeConf: 'include /etc/qemu/vnet.conf\nallow virbr0\n' }, scope([def], [st(def, 'up')]));
    expect(fs).toEqual([expect.objectContaining({ severity: 'warning', fix: "sudo sed -i '1i allow virbr0' /etc/qemu/bridge.conf" })]);
  });
  it('a deny for a vnet bridge is an error', () => {
    const fs = judgeBridgeAcl({ ...base, decisions: new Map([['virbr0', { allowed: false, denied: true, reason: 'access denied by acl file' }]]) }, scope([def], [st(def, 'up')]));
    expect(fs[0]).toMatchObject({ severity: 'error' });
  });
});

describe("users' libvirt bridge_helper", () => {
  it('parses qemu.conf and /etc/passwd', () => {
    expect(bridgeHelperOf('# bridge_helper = "/x"\nbridge_helper = "/usr/local/libexec/vnet-bridge-helper"  # vnet\n')).toBe('/usr/local/libexec/vnet-bridge-helper');
    expect(bridgeHelperOf('user = "qemu"\n')).toBeUndefined();
    expect(sessionUsers('root:x:0:0::/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\nalice:x:1000:1000::/home/alice:/bin/bash\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n')).toEqual([
      { user: 'root', home: '/root', uid: 0, gid: 0 },
      { user: 'alice', home: '/home/alice', uid: 1000, gid: 1000 },
    ]);
  });
  it('a helper path that is not there is an error; another helper or none a note; unreadable files are named', () => {
    const file = '/home/alice/.config/libvirt/qemu.conf';
    const gone = judgeQemuConf({ users: [{ user: 'alice', file, text: 'bridge_helper = "/opt/gone/vnet-bridge-helper"\n', helper: { path: '/opt/gone/vnet-bridge-helper', exists: false, executable: false } }] });
    expect(gone[0]).toMatchObject({ check: 'libvirt-helper', ok: false, severity: 'error' });
    expect(judgeQemuConf({ users: [{ user: 'alice', file, text: 'bridge_helper = "/usr/local/libexec/vnet-bridge-helper"\n', helper: { path: '/usr/local/libexec/vnet-bridge-helper', exists: true, executable: true } }] })[0]).toMatchObject({ severity: 'ok' });
    expect(judgeQemuConf({ users: [{ user: 'alice', file, text: '' }] })[0]).toMatchObject({ ok: true, severity: 'info' });
    expect(judgeQemuConf({ users: [{ user: 'bob', file, text: { unreadable: 'permission denied (run as root to check this)' } }] })[0]!.problem).toBe('could not read the libvirt qemu.conf of bob: permission denied (run as root to check this)');
  });
});

describe('firewalld', () => {
  it('running without vnet\'s zones: an error with make install and the reload; an up bridge in no zone: a warning; not running: ok', () => {
    const [f] = judgeFirewalld({ running: true, zones: ['public', 'trusted'], zoneOf: new Map() }, scope([def, lab]));
    expect(f).toMatchObject({ check: 'firewalld', ok: false, severity: 'error' });
    expect(f!.problem).toContain('no zone "vnet" and "vnet-isolated"');
    expect(f!.fix).toContain('sudo firewall-cmd --reload');
    const [w] = judgeFirewalld({ running: true, zones: ['vnet', 'vnet-isolated'], zoneOf: new Map([['virbr0', '']]) }, scope([def], [st(def, 'up')]));
    expect(w).toMatchObject({ severity: 'warning' });
    expect(judgeFirewalld({ running: true, zones: ['vnet'], zoneOf: new Map([['virbr0', 'vnet']]) }, scope([def], [st(def, 'up')]))[0]).toMatchObject({ severity: 'ok' });
    expect(judgeFirewalld({ running: false, zones: [], zoneOf: new Map() }, scope([def]))[0]).toMatchObject({ severity: 'ok' });
  });
});

describe('subnets, vnetd and a dnsmasq that keeps dying', () => {
  const links = [{ index: 1, name: 'lo', kind: undefined }, { index: 5, name: 'tun0', kind: 'tun' }] as never;
  it('a route over the subnet is named with its interface; an up network with a conflict says it', () => {
    const host = { links, routes: [{ family: 4, dst: '192.168.0.0/16', oif: 5 }] as never, addresses: [] };
    const [f] = judgeSubnets({ host, owned: new Map(), definitionErrors: [] }, scope([def]));
    expect(f).toMatchObject({ check: 'subnets', ok: false, severity: 'error' });
    expect(f!.problem).toContain('subnet 192.168.122.0/24 is already in use by interface tun0 (route 192.168.0.0/16)');
    const up = judgeSubnets({ host: { links, routes: [], addresses: [] }, owned: new Map(), definitionErrors: ['lab.toml: key `address`: bad'] }, scope([def], [st(def, 'up', { conflict: { subnet: '192.168.122.0/24', interface: 'tun0', detail: 'route 192.168.122.0/25' } })]));
    expect(up.map((x) => x.check)).toEqual(['definitions', 'subnets']);
  });
  it('vnetd unreachable is an error naming the fix; a failed network names its reason; a healthy one is ok', () => {
    expect(judgeVnetd(scope([def], 'vnetd is not running (no socket at /run/vnet/vnetd.sock)'))[0]).toMatchObject({ check: 'vnetd', ok: false, fix: expect.stringContaining('sudo systemctl enable --now vnetd.socket') });
    const [d] = judgeVnetd(scope([def], [st(def, 'failed', { reason: 'dnsmasq keeps failing: dnsmasq exited with code 2' })]));
    expect(d).toMatchObject({ check: 'dnsmasq', ok: false, severity: 'error' });
    expect(d!.fix).toContain('sudo vnet down default --force && sudo vnet up default');
    expect(judgeVnetd(scope([def], [st(def, 'up')]))[0]).toMatchObject({ severity: 'ok' });
  });
});

describe('text from other users', () => {
  it('is printed without control characters (terminal escapes), and cut', () => {
    const [f] = judgeQemuConf({ users: [{ user: 'mallory', file: '/home/mallory/.config/libvirt/qemu.conf', text: 'bridge_helper = "/x\u001b]0;owned\u0007/qemu-bridge-helper"\n', helper: { path: '/x', exists: true, executable: true } }] });
    expect(f!.problem).toContain('bridge_helper = "/x?]0;owned?/qemu-bridge-helper"');
    expect(printable('a'.repeat(300))).toHaveLength(201);
  });
});

describe('the text', () => {
  it('one line per finding, the fix under it, and whether anything is wrong', () => {
    const text = formatFindings([...judgeVnetd(scope([def], [st(def, 'up')])), ...judgeTun({ path: '/dev/net/tun', stat: undefined })]);
    expect(text.split('\n')).toEqual([
      'ok       vnetd  vnetd answers, and no network failed',
      'error    tun    /dev/net/tun does not exist: vnetd cannot make taps, so no VM gets a network',
      '                fix: sudo modprobe tun   # and, if /dev/net/tun is still missing: sudo mkdir -p /dev/net && sudo mknod -m 0666 /dev/net/tun c 10 200',
      '',
      'something is wrong: 1 error',
    ]);
  });
});
