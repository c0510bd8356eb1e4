/**
 * Static hosts and guest DNS with the real vnetd and dnsmasq, guests in namespaces (busybox udhcpc
 * and nslookup):
 *
 *   guests ── vnlab0 10.50.0.1/24 "lab" (domain lab.test, [[hosts]], records, a forwarder) ─┐
 *   guest  ── vnq0   10.51.0.1/24 "quiet" (dns = false)                                      ├ [host] up0 ── wan 198.51.100.1
 *                                                                (a dnsmasq answering corp.example) ┘
 */
import { execa } from 'execa';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupAll, createNetns, hostAndWan, tempDir, trackPid, untrackPid, veth, waitFor, type Netns } from '../support/netns.js';
import { ROOT, Vnetd, vnetEnv } from '../support/vnetd.js';

const DNS_PROBE = path.join(ROOT, 'test/support/dns-probe.py');
const WAN = '198.51.100.1';

let host: Netns;
let wan: Netns;
let vnetd: Vnetd;
let labFile: string;
let script: string;
let wanDns: ReturnType<typeof execa> | undefined;
const scratch = tempDir('vnet-dns-hosts-');

const LAB = `bridge = "vnlab0"
address = "10.50.0.1/24"
dhcp-range = ["10.50.0.100", "10.50.0.199"]
domain = "lab.test"
dhcp-lease-time = 600
on-demand = false
dns-forwarders = [{ addr = "${WAN}", domain = "corp.example" }]

[[hosts]]
mac = "52:54:00:aa:00:01"
name = "web"
ip = "10.50.0.10"

[[dns-records]]
type = "host"
ip = "10.50.0.5"
names = ["files", "files.lab.test"]

[[dns-records]]
type = "srv"
service = "ldap"
protocol = "tcp"
domain = "lab.test"
target = "files.lab.test"
port = 389
priority = 10
weight = 5

[[dns-records]]
type = "txt"
name = "info"
value = "lab network, \\"quoted\\""
`;

interface Lease {
  ip: string;
  dns: string;
  domain: string;
  lease: string;
}

/** A guest namespace whose eth0 (with `mac`) is a port of `bridge`. */
async function guestOn(bridge: string, port: string, mac: string): Promise<Netns> {
  const g = await createNetns('vg');
  await veth(host, port, g, 'eth0');
  await host.run('ip', ['link', 'set', port, 'master', bridge]);
  await g.run('ip', ['link', 'set', 'eth0', 'down']);
  await g.run('ip', ['link', 'set', 'eth0', 'address', mac]);
  await g.run('ip', ['link', 'set', 'eth0', 'up']);
  return g;
}

/** DHCP until a lease, sending `hostname`; what the lease said. */
async function dhcp(g: Netns, hostname?: string): Promise<Lease> {
  const args = ['udhcpc', '-i', 'eth0', '-n', '-q', '-t', '10', '-T', '1', '-s', script, ...(hostname ? ['-x', `hostname:${hostname}`] : [])];
  const out = await g.run('busybox', args);
  const field = (k: string) => new RegExp(`^${k}=(.*)$`, 'm').exec(out)?.[1] ?? '';
  return { ip: field('ip'), dns: field('dns'), domain: field('domain'), lease: field('lease') };
}

/** busybox nslookup from `g` against `server`: the answer lines ("Address: ...", "text = ...", "service = ..."). */
async function lookup(g: Netns, name: string, server: string, type = 'a'): Promise<string[]> {
  const r = await g.tryRun('busybox', ['nslookup', `-type=${type}`, name, server]);
  return `${r.stdout}\n${r.stderr}`
    .split('\n')
    .map((l) => l.trim())
    // the server's own line is "Address:\tSERVER:53" (a tab); answers have a space
    .filter((l) => /^(Address: |.*\ttext = |.*\tservice = |\*\* server can't find)/.test(l));
}

beforeAll(async () => {
  ({ host, wan } = await hostAndWan());
  script = path.join(scratch, 'udhcpc.sh');
  writeFileSync(
    script,
    `#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/\${mask:-24}" dev "$interface"
    echo "ip=$ip"; echo "dns=$dns"; echo "domain=$domain"; echo "lease=$lease"
    ;;
esac
exit 0
`,
  );
  chmodSync(script, 0o755);
  // the wan's DNS server: the only one that knows corp.example
  wanDns = execa('ip', ['netns', 'exec', wan.name, 'dnsmasq', '--keep-in-foreground', '--log-facility=-', '--log-queries', '--conf-file=/dev/null', `--listen-address=${WAN}`,
    '--bind-interfaces', '--no-resolv', '--no-hosts', '--pid-file=', '--user=root', '--host-record=svc.corp.example,203.0.113.77'], { reject: false, buffer: false, stdin: 'ignore' });
  trackPid(wanDns.pid);
  await waitFor('the wan DNS server', async () => (await wan.tryRun('busybox', ['nslookup', 'svc.corp.example', WAN])).stdout.includes('203.0.113.77'));
  const env = vnetEnv();
  labFile = path.join(env.VNET_CONFIG_DIR, 'networks', 'lab.toml');
  writeFileSync(labFile, LAB);
  writeFileSync(
    path.join(env.VNET_CONFIG_DIR, 'networks', 'quiet.toml'),
    'bridge = "vnq0"\naddress = "10.51.0.1/24"\ndhcp-range = ["10.51.0.100", "10.51.0.199"]\ndomain = "quiet.test"\ndns = false\non-demand = false\n',
  );
  vnetd = await new Vnetd(host, env).start();
  for (const n of ['lab', 'quiet']) {
    const up = await vnetd.cli(['up', n]);
    expect(up.exitCode, up.stderr).toBe(0);
  }
}, 60_000);

afterAll(async () => {
  wanDns?.kill('SIGTERM');
  await wanDns;
  untrackPid(wanDns?.pid);
  await vnetd?.stop();
  await cleanupAll();
});

describe('static hosts and guest names', () => {
  let web: Netns;
  let gina: Netns;
  let ginaIp = '';

  it('the static host (its MAC) gets its fixed address; leases last dhcp-lease-time; DNS and domain point at the bridge', async () => {
    web = await guestOn('vnlab0', 'lab1', '52:54:00:aa:00:01');
    expect(await dhcp(web)).toEqual({ ip: '10.50.0.10', dns: '10.50.0.1', domain: 'lab.test', lease: '600' });
    gina = await guestOn('vnlab0', 'lab2', '52:54:00:aa:00:02');
    const l = await dhcp(gina, 'gina');
    ginaIp = l.ip;
    expect(Number(ginaIp.split('.')[3])).toBeGreaterThanOrEqual(100);
  });

  it('one guest resolves another by its DHCP hostname and a static host by its name, under the domain and bare', async () => {
    expect(await lookup(web, 'gina.lab.test', '10.50.0.1')).toContain(`Address: ${ginaIp}`);
    expect(await lookup(web, 'gina', '10.50.0.1')).toContain(`Address: ${ginaIp}`);
    expect(await lookup(gina, 'web.lab.test', '10.50.0.1')).toContain('Address: 10.50.0.10');
    expect(await lookup(gina, 'web', '10.50.0.1')).toContain('Address: 10.50.0.10');
    // local=/lab.test/: a name in the domain that nobody has is not asked upstream
    expect((await lookup(gina, 'nobody.lab.test', '10.50.0.1')).join('\n')).toMatch(/can't find nobody\.lab\.test: NXDOMAIN/);
  });

  it('host, SRV and TXT records answer', async () => {
    expect(await lookup(gina, 'files.lab.test', '10.50.0.1')).toContain('Address: 10.50.0.5');
    expect(await lookup(gina, 'files', '10.50.0.1')).toContain('Address: 10.50.0.5');
    expect(await lookup(gina, '_ldap._tcp.lab.test', '10.50.0.1', 'srv')).toEqual(['_ldap._tcp.lab.test\tservice = 10 5 389 files.lab.test']);
    expect(await lookup(gina, 'info', '10.50.0.1', 'txt')).toEqual(['info\ttext = "lab network, "quoted""']);
  });

  it('a name under a forwarder\'s domain is asked of that forwarder', async () => {
    expect(await lookup(gina, 'svc.corp.example', '10.50.0.1')).toContain('Address: 203.0.113.77');
  });

  it('vnet reload applies changed hosts and records by restarting dnsmasq only', async () => {
    const ifindex = async () => (JSON.parse(await host.run('ip', ['-j', 'link', 'show', 'dev', 'vnlab0'])) as Array<{ ifindex: number }>)[0]!.ifindex;
    const [index, pid] = [await ifindex(), vnetd.children('dnsmasq')];
    writeFileSync(labFile, LAB.replace('ip = "10.50.0.10"', 'ip = "10.50.0.20"').replace('ip = "10.50.0.5"', 'ip = "10.50.0.6"'));
    const r = await vnetd.cli(['reload', 'lab']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe('lab: applied hosts, dns-records');
    expect(await ifindex()).toBe(index);
    const now = vnetd.children('dnsmasq');
    expect(now).toHaveLength(2);
    expect(now.filter((p) => !pid.includes(p))).toHaveLength(1);
    expect(await lookup(gina, 'files.lab.test', '10.50.0.1')).toContain('Address: 10.50.0.6');
    expect((await dhcp(web)).ip).toBe('10.50.0.20');
    expect(await lookup(gina, 'web.lab.test', '10.50.0.1')).toContain('Address: 10.50.0.20');
  });
});

describe('dns = false', () => {
  it('DHCP still works, hands out no DNS server, and nothing answers DNS on the bridge', async () => {
    const g = await guestOn('vnq0', 'q1', '52:54:00:bb:00:01');
    const l = await dhcp(g);
    expect(Number(l.ip.split('.')[3])).toBeGreaterThanOrEqual(100);
    expect(l.dns).toBe('');
    expect(l.domain).toBe('quiet.test');
    expect(JSON.parse(await g.run('python3', [DNS_PROBE, '10.51.0.1', 'x.quiet.test']))).toEqual({ udp: 'refused', tcp: 'refused' });
    expect(readFileSync(path.join(vnetd.env.VNET_RUNTIME_DIR, 'dnsmasq', 'quiet.conf'), 'utf8')).toContain('\nport=0\n');
  });
});
