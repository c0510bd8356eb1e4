/**
 * IPv6 end to end, with the real vnetd, kernel, nft and dnsmasq:
 *
 *   guest ── vnslaac0 fd00:70::1/64 (nat, nat6: SLAAC)            ─┐ [host] up0 (SLAAC from the wan's RA,
 *   guest ── vnstate0 fd00:71::1/64 (route, dhcp6-range: DHCPv6)  ─┘        default route by RA) ── wan 2001:db8:100::1/64
 *
 * The wan namespace is the host's IPv6 router: a dnsmasq there sends router advertisements, so the
 * host namespace learns its address and default route the way a laptop does (accept_ra = 1).
 * What the wan sees is read from a TCP server there that answers with the peer's address.
 */
import { execa } from 'execa';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Lease } from '../../src/model.js';
import { cleanupAll, createNetns, hostAndWan, tempDir, trackPid, untrackPid, veth, waitFor, type Netns } from '../support/netns.js';
import { echoPeer, peerSeen } from '../support/traffic.js';
import { ROOT, Vnetd, vnetEnv, type VnetEnv } from '../support/vnetd.js';

const DHCP6 = path.join(ROOT, 'test/support/dhcp6-client.mjs');
const DNS_PROBE = path.join(ROOT, 'test/support/dns-probe.py');
const WAN6 = '2001:db8:100::1';

let host: Netns;
let wan: Netns;
let env: VnetEnv;
let vnetd: Vnetd;
const procs: Array<ReturnType<typeof execa>> = [];

function spawnIn(ns: Netns, cmd: string, args: string[]): ReturnType<typeof execa> {
  const p = execa('ip', ['netns', 'exec', ns.name, cmd, ...args], { reject: false, stdin: 'ignore', buffer: false });
  trackPid(p.pid);
  procs.push(p);
  return p;
}

const ping6 = async (from: Netns, to: string) => (await from.tryRun('busybox', ['ping6', '-c', '1', '-W', '2', to])).exitCode === 0;
const sysctl = async (ns: Netns, key: string) => (await ns.run('cat', [`/proc/sys/${key}`])).trim();

/** The global addresses of `dev` in `ns` (no tentative ones). */
async function globals6(ns: Netns, dev: string): Promise<string[]> {
  const out = JSON.parse(await ns.run('ip', ['-6', '-j', 'addr', 'show', 'dev', dev, 'scope', 'global', '-tentative'])) as Array<{ addr_info: Array<{ local: string }> }>;
  return out.flatMap((l) => l.addr_info.map((a) => a.local));
}

const defaultRoute6 = async (ns: Netns) => (await ns.run('ip', ['-6', 'route', 'show', 'default'])).trim();

/** A guest namespace on `bridge` through a veth port; its eth0 accepts RAs (a guest's kernel default). */
async function guest(bridge: string, port: string): Promise<{ g: Netns; mac: string }> {
  const g = await createNetns('vg');
  // the guest's link-local address is usable at once (no DAD wait before DHCPv6)
  await g.run('sysctl', ['-qw', 'net.ipv6.conf.default.accept_dad=0']);
  await veth(host, port, g, 'eth0');
  await host.run('ip', ['link', 'set', port, 'master', bridge]);
  const mac = (JSON.parse(await g.run('ip', ['-j', 'link', 'show', 'eth0'])) as Array<{ address: string }>)[0]!.address;
  return { g, mac };
}

beforeAll(async () => {
  ({ host, wan } = await hostAndWan());
  // the host learns IPv6 by router advertisement, as a laptop on a home network: accept_ra = 1
  await host.run('sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=0', 'net.ipv6.conf.up0.accept_ra=1', 'net.ipv6.conf.up0.accept_dad=0']);
  await wan.run('ip', ['addr', 'add', `${WAN6}/64`, 'dev', 'wan0', 'nodad']);
  // the wan is a router: with forwarding off its neighbour advertisements would lack the router
  // flag, and the host deletes the default route through a neighbour that says it is no router
  await wan.run('sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=1']);
  const wanDir = tempDir('vnet-wan-ra-');
  spawnIn(wan, 'dnsmasq', [
    '--keep-in-foreground', '--conf-file=/dev/null', '--pid-file=', '--port=0', '--user=root', '--group=root',
    '--interface=wan0', '--bind-interfaces', '--enable-ra', '--dhcp-range=2001:db8:100::,ra-only,64,1h',
    `--dhcp-leasefile=${path.join(wanDir, 'leases')}`, '--log-facility=-',
  ]);
  await waitFor('the host\'s SLAAC address and RA default route', async () => (await globals6(host, 'up0')).length > 0 && (await defaultRoute6(host)).includes('proto ra'), 20_000);

  env = vnetEnv();
  const nets = path.join(env.VNET_CONFIG_DIR, 'networks');
  writeFileSync(path.join(nets, 'slaac.toml'), 'bridge = "vnslaac0"\naddress = "10.70.0.1/24"\naddress6 = "fd00:70::1/64"\nnat6 = true\ndomain = "six.test"\n');
  writeFileSync(path.join(nets, 'state.toml'), 'bridge = "vnstate0"\naddress = "10.71.0.1/24"\naddress6 = "fd00:71::1/64"\ndhcp6-range = ["fd00:71::100", "fd00:71::1ff"]\nforward = "route"\n');
  vnetd = await new Vnetd(host, env).start();
  await echoPeer(wan, '::', 8080);
}, 60_000);

afterAll(async () => {
  for (const p of procs) {
    p.kill('SIGKILL');
    untrackPid(p.pid);
  }
  await vnetd?.stop();
  await cleanupAll();
});

describe('IPv6 networks', () => {
  let hostAddr: string;

  it('the host keeps its RA default route when vnet turns IPv6 forwarding on (accept_ra 1 → 2)', async () => {
    hostAddr = (await globals6(host, 'up0'))[0]!;
    const before = await defaultRoute6(host);
    expect(before).toMatch(/^default via fe80::\S+ dev up0 proto ra/);
    const up = await vnetd.cli(['up', 'slaac']);
    expect(up.exitCode, up.stderr).toBe(0);
    expect(await sysctl(host, 'net/ipv6/conf/all/forwarding')).toBe('1');
    expect((await defaultRoute6(host)).split(' ').slice(0, 5)).toEqual(before.split(' ').slice(0, 5));
    expect(await sysctl(host, 'net/ipv6/conf/up0/accept_ra')).toBe('2');
    // a guest's RA can never steer the host: vnet's bridge accepts none
    expect(await sysctl(host, 'net/ipv6/conf/vnslaac0/accept_ra')).toBe('0');
    expect(await ping6(host, WAN6)).toBe(true);
    // dnsmasq serves DNS on the bridge's IPv6 address as well
    await waitFor('dnsmasq on [fd00:70::1]:53', async () => (await host.run('ss', ['-ulnH'])).includes('[fd00:70::1]:53'));
  });

  it('SLAAC: a guest gets an address from the router advertisement and reaches the wan, masqueraded to the host\'s address (nat6)', async () => {
    const { g } = await guest('vnslaac0', 'sl1');
    await waitFor('a SLAAC address and default route in the guest', async () => (await globals6(g, 'eth0')).some((a) => a.startsWith('fd00:70::')) && (await defaultRoute6(g)).includes('proto ra'), 20_000);
    expect(await ping6(g, WAN6)).toBe(true);
    // the wan has no route to fd00:70::/64: only NAT66 lets the reply come back
    expect((await peerSeen(g, WAN6, 8080))?.split(' ')[0]).toBe(hostAddr);
    // dnsmasq answers guests on the bridge's IPv6 address, and refuses the wan (guard6)
    expect(JSON.parse(await g.run('python3', [DNS_PROBE, 'fd00:70::1', 'probe.six.test']))).toEqual({ udp: 'answered', tcp: 'connected' });
    await wan.run('ip', ['-6', 'route', 'add', 'fd00:70::/64', 'via', hostAddr]);
    try {
      expect(JSON.parse(await wan.run('python3', [DNS_PROBE, 'fd00:70::1', 'probe.six.test']))).toEqual({ udp: 'refused', tcp: 'refused' });
    } finally {
      await wan.run('ip', ['-6', 'route', 'del', 'fd00:70::/64']);
    }
  });

  it('DHCPv6: a guest on a network with dhcp6-range gets a lease from the range, reaches the wan with it (routed), and `vnet leases` shows it', async () => {
    const up = await vnetd.cli(['up', 'state']);
    expect(up.exitCode, up.stderr).toBe(0);
    const { g, mac } = await guest('vnstate0', 'st1');
    const r = await g.tryRun(process.execPath, [DHCP6, 'eth0', mac, '4242']);
    expect(r.exitCode, r.stderr).toBe(0);
    const addr = /LEASE6 (\S+)/.exec(r.stdout)![1]!;
    expect(addr).toMatch(/^fd00:71::1[0-9a-f]{2}$/);
    await g.run('ip', ['-6', 'addr', 'add', `${addr}/64`, 'dev', 'eth0', 'nodad']);
    await waitFor('the RA default route in the DHCPv6 guest', async () => (await defaultRoute6(g)).includes('proto ra'), 20_000);
    await wan.run('ip', ['-6', 'route', 'add', 'fd00:71::/64', 'via', hostAddr]);
    try {
      expect((await peerSeen(g, WAN6, 8080))?.split(' ')[0]).toBe(addr);
    } finally {
      await wan.run('ip', ['-6', 'route', 'del', 'fd00:71::/64']);
    }
    const leases = await vnetd.cli(['leases', 'state', '--json']);
    expect(leases.exitCode, leases.stderr).toBe(0);
    const mine = (JSON.parse(leases.stdout) as Lease[]).find((l) => l.ip === addr);
    expect(mine).toMatchObject({ mac, iaid: '4242', clientId: `00:03:00:01:${mac}` });
    const table = await vnetd.cli(['leases', 'state']);
    expect(table.stdout).toMatch(new RegExp(`^${mac}\\s+${addr}\\s+-\\s+\\S+\\s+4242\\s+00:03:00:01:${mac}$`, 'm'));
    const status = await vnetd.cli(['status', 'state', '--json']);
    expect(JSON.parse(status.stdout)).toMatchObject([{ name: 'state', leases: 1 }]);
  });

  it('down of the last IPv6 network restores forwarding and accept_ra; the host\'s route is still there', async () => {
    expect((await vnetd.cli(['down', 'slaac'])).exitCode).toBe(0);
    // one IPv6 network still forwards: nothing is restored yet
    expect(await sysctl(host, 'net/ipv6/conf/up0/accept_ra')).toBe('2');
    expect((await vnetd.cli(['down', 'state'])).exitCode).toBe(0);
    expect(await sysctl(host, 'net/ipv6/conf/all/forwarding')).toBe('0');
    expect(await sysctl(host, 'net/ipv6/conf/up0/accept_ra')).toBe('1');
    expect(await defaultRoute6(host)).toMatch(/^default via fe80::\S+ dev up0 proto ra/);
  });
});
