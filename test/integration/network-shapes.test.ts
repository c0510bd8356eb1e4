/**
 * Shapes of network beyond IPv4 NAT, end to end with the real vnetd, kernel, nft and dnsmasq:
 * an isolated network (guests reach each other and the host's DHCP and DNS, nothing is
 * forwarded, no NAT) and a bridge that carries an IPv6 address beside its IPv4 one.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupAll, createNetns, hostAndWan, veth, type Netns } from '../support/netns.js';
import { ROOT, Vnetd, vnetEnv } from '../support/vnetd.js';

const UDHCPC = path.join(ROOT, 'test/support/udhcpc.sh');

let host: Netns;
let wan: Netns;
let vnetd: Vnetd;

async function guestOn(bridge: string, port: string): Promise<Netns> {
  const g = await createNetns('vg');
  await veth(host, port, g, 'eth0');
  await host.run('ip', ['link', 'set', port, 'master', bridge]);
  return g;
}

beforeAll(async () => {
  ({ host, wan } = await hostAndWan());
  const env = vnetEnv();
  const nets = path.join(env.VNET_CONFIG_DIR, 'networks');
  writeFileSync(path.join(nets, 'lab.toml'), 'bridge = "vnlab0"\naddress = "10.20.0.1/24"\ndhcp-range = ["10.20.0.10", "10.20.0.99"]\nforward = "isolated"\n');
  writeFileSync(path.join(nets, 'six.toml'), 'bridge = "vnsix0"\naddress = "10.60.0.1/24"\naddress6 = ["fd00:60::1/64", "fd00:61::1/64"]\n');
  vnetd = await new Vnetd(host, env).start();
});

afterAll(async () => {
  await vnetd?.stop();
  await cleanupAll();
});

describe('forward = "isolated"', () => {
  it('guests get leases and reach each other and the host\'s DNS; nothing reaches the wan, not even with a route', async () => {
    // a NAT network beside it turns forwarding on: isolation must hold by rules, not by chance
    expect((await vnetd.cli(['up', 'default'])).exitCode).toBe(0);
    expect((await vnetd.cli(['up', 'lab'])).exitCode).toBe(0);
    const g1 = await guestOn('vnlab0', 'lab1');
    const g2 = await guestOn('vnlab0', 'lab2');
    const l1 = /LEASE (\S+)/.exec(await g1.run('busybox', ['udhcpc', '-i', 'eth0', '-n', '-q', '-t', '10', '-T', '1', '-x', 'hostname:labone', '-s', UDHCPC]))![1]!;
    const l2 = /LEASE (\S+)/.exec(await g2.run('busybox', ['udhcpc', '-i', 'eth0', '-n', '-q', '-t', '10', '-T', '1', '-s', UDHCPC]))![1]!;
    expect(l1).toMatch(/^10\.20\.0\.\d+$/);
    expect(await g1.run('ip', ['route', 'show', 'default'])).toBe(''); // no router offered
    expect((await g2.tryRun('busybox', ['ping', '-c', '1', '-W', '2', l1])).exitCode).toBe(0);
    const dns = await g2.tryRun('busybox', ['timeout', '5', 'nslookup', '-type=a', 'labone', '10.20.0.1']);
    expect(dns.stdout).toContain(l1);
    // no default route from DHCP helps: isolated networks hand out none, and a static one is refused
    await g2.run('ip', ['route', 'replace', 'default', 'via', '10.20.0.1']);
    await wan.run('ip', ['route', 'add', '10.20.0.0/24', 'via', '198.51.100.2']);
    try {
      expect((await g2.tryRun('busybox', ['ping', '-c', '1', '-W', '2', '198.51.100.1'])).exitCode).not.toBe(0);
      expect((await wan.tryRun('busybox', ['ping', '-c', '1', '-W', '2', l2])).exitCode).not.toBe(0);
    } finally {
      await wan.run('ip', ['route', 'del', '10.20.0.0/24']);
    }
    expect(await host.run('nft', ['list', 'chain', 'inet', 'vnet', 'from-vnlab0'])).not.toMatch(/accept/);
    expect((await host.tryRun('nft', ['list', 'chain', 'inet', 'vnet', 'nat-vnlab0'])).exitCode).not.toBe(0);
    expect((await vnetd.cli(['down', 'lab', '--force'])).exitCode).toBe(0);
    expect((await vnetd.cli(['down', 'default'])).exitCode).toBe(0);
    expect((await host.run('cat', ['/proc/sys/net/ipv4/ip_forward'])).trim()).toBe('0');
  });
});

describe('an IPv6 address on the bridge', () => {
  it('carries both families, keeps IPv6 on for that bridge, shows them in status, and takes them down', async () => {
    const up = await vnetd.cli(['up', 'six']);
    expect(up.exitCode, up.stderr).toBe(0);
    const info = JSON.parse(await host.run('ip', ['-j', 'addr', 'show', 'dev', 'vnsix0']))[0].addr_info as Array<{ family: string; local: string; prefixlen: number; scope: string; tentative?: boolean }>;
    expect(info.filter((a) => a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`).sort()).toEqual(['10.60.0.1/24', 'fd00:60::1/64', 'fd00:61::1/64']);
    expect(info.some((a) => a.tentative)).toBe(false);
    expect((await host.run('cat', ['/proc/sys/net/ipv6/conf/vnsix0/disable_ipv6'])).trim()).toBe('0');
    const s = JSON.parse((await vnetd.cli(['status', 'six', '--json'])).stdout) as Array<{ addresses: string[] }> | { addresses: string[] };
    expect((Array.isArray(s) ? s[0]! : s).addresses).toEqual(['10.60.0.1/24', 'fd00:60::1/64', 'fd00:61::1/64']);
    // a guest on the bridge reaches the bridge over IPv6
    const g = await guestOn('vnsix0', 'six1');
    await g.run('ip', ['addr', 'add', 'fd00:60::50/64', 'dev', 'eth0', 'nodad']);
    expect((await g.tryRun('busybox', ['ping', '-c', '1', '-W', '2', 'fd00:60::1'])).exitCode).toBe(0);
    expect((await vnetd.cli(['down', 'six', '--force'])).exitCode).toBe(0);
    expect((await host.tryRun('ip', ['link', 'show', 'vnsix0'])).exitCode).not.toBe(0);
  });
});
