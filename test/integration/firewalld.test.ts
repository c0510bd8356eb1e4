/**
 * vnet beside the real firewalld (Debian's package, default zone `public`), all in throwaway
 * namespaces (test/support/firewalld.ts: its own bus, its own /etc/firewalld, its table in the
 * "host" namespace):
 *
 *   guest ── virbr0 192.168.122.1 [host: vnetd, dnsmasq, firewalld] up0 198.51.100.2 ── wan 198.51.100.1
 *
 * firewalld's table rejects what its zones do not allow, whatever vnet's table accepts; vnetd
 * binds each bridge to vnet's zone (etc/firewalld) over D-Bus while its network is up.
 */
import { execa } from 'execa';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestFirewalld } from '../support/firewalld.js';
import { cleanupAll, createNetns, hostAndWan, trackPid, untrackPid, veth, waitFor, type Netns } from '../support/netns.js';
import { ROOT, Vnetd, vnetEnv, type VnetEnv } from '../support/vnetd.js';

const UDHCPC = path.join(ROOT, 'test/support/udhcpc.sh');
const WAN = '198.51.100.1';
const PORT = 8081;

let host: Netns;
let wan: Netns;
let fw: TestFirewalld;
let env: VnetEnv;
let vnetd: Vnetd;
/** the default zone as firewalld had it before vnet did anything */
let publicBefore: string;

async function guestOn(bridge: string, port: string): Promise<Netns> {
  const g = await createNetns('vg');
  await veth(host, port, g, 'eth0');
  await host.run('ip', ['link', 'set', port, 'master', bridge]);
  return g;
}

/** A DHCP lease (its address), or undefined after a few seconds of asking. */
async function lease(g: Netns, hostname = 'guest'): Promise<string | undefined> {
  const r = await g.tryRun('busybox', ['udhcpc', '-i', 'eth0', '-n', '-q', '-t', '4', '-T', '1', '-x', `hostname:${hostname}`, '-s', UDHCPC]);
  return /LEASE (\S+)/.exec(r.stdout)?.[1];
}

async function ping(from: Netns, to: string): Promise<boolean> {
  return (await from.tryRun('busybox', ['ping', '-c', '1', '-W', '2', to])).exitCode === 0;
}

/** Does a TCP connection to to:port from `from` get through (connected), or is it refused or lost? */
async function connects(from: Netns, to: string, port = PORT): Promise<boolean> {
  const code = 'import socket,sys\ntry:\n socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)\nexcept OSError:\n sys.exit(1)\n';
  return (await from.tryRun('python3', ['-c', code, to, String(port)])).exitCode === 0;
}

beforeAll(async () => {
  ({ host, wan } = await hostAndWan());
  fw = await TestFirewalld.start(host, { vnetFiles: true });
  publicBefore = (await fw.cmd(['--zone=public', '--list-all'])).stdout;
  env = vnetEnv(fw.env);
  writeFileSync(path.join(env.VNET_CONFIG_DIR, 'networks', 'lab.toml'), 'bridge = "vnlab0"\naddress = "10.20.0.1/24"\ndhcp-range = ["10.20.0.10", "10.20.0.99"]\nforward = "isolated"\n');
}, 120_000);

afterAll(async () => {
  await vnetd?.stop();
  await fw?.stop();
  await cleanupAll();
});

describe('vnet and firewalld', () => {
  it('without a binding (a vnetd not on firewalld\'s bus) firewalld kills DHCP and forwarding from the bridge', async () => {
    const blind = await new Vnetd(host, vnetEnv()).start();
    try {
      expect((await blind.cli(['up', 'default'])).exitCode).toBe(0);
      expect(await fw.zoneOf('virbr0')).toBe('no zone');
      const g = await guestOn('virbr0', 'blind0');
      expect(await lease(g)).toBeUndefined();
      // by hand, an address: forwarding dies in firewalld's table too
      await g.run('ip', ['addr', 'add', '192.168.122.250/24', 'dev', 'eth0']);
      await g.run('ip', ['route', 'add', 'default', 'via', '192.168.122.1']);
      expect(await ping(g, WAN)).toBe(false);
      expect((await blind.cli(['down', 'default'])).exitCode).toBe(0);
    } finally {
      await blind.stop();
    }
  });

  it('vnetd binds the bridge to zone vnet: the guest gets a lease, resolves on the bridge and reaches the wan through NAT', async () => {
    vnetd = await new Vnetd(host, env).start();
    const up = await vnetd.cli(['up', 'default']);
    expect(up.exitCode, up.stderr).toBe(0);
    expect(await fw.zoneOf('virbr0')).toBe('vnet');
    const g = await guestOn('virbr0', 'gport');
    const ip = await lease(g, 'vnetguest');
    expect(ip).toMatch(/^192\.168\.122\.\d+$/);
    const dns = await g.tryRun('busybox', ['timeout', '5', 'nslookup', '-type=a', 'vnetguest', '192.168.122.1']);
    expect(dns.stdout).toContain(ip);
    expect(await ping(g, WAN)).toBe(true);
    // the default zone, where the uplink is, is as it was
    expect((await fw.cmd(['--get-default-zone'])).stdout).toBe('public');
    expect((await fw.cmd(['--zone=public', '--list-all'])).stdout).toBe(publicBefore);
  });

  it('opens nothing else on the host: a port listening everywhere stays shut to the guest and to the wan', async () => {
    const g = await guestOn('virbr0', 'gport2');
    expect(await lease(g)).toBeDefined();
    const listener = execa('ip', ['netns', 'exec', host.name, 'python3', '-c', `import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(("0.0.0.0", ${PORT}))\ns.listen(16)\ntime.sleep(600)\n`], { reject: false, stdin: 'ignore' });
    trackPid(listener.pid);
    try {
      await waitFor('the listener', () => connects(host, '127.0.0.1'));
      expect(await connects(g, '192.168.122.1')).toBe(false);
      expect(await connects(wan, '198.51.100.2')).toBe(false);
      // the probe can tell: the same port opened in vnet's zone is reached from the guest
      expect((await fw.cmd(['--zone=vnet', `--add-port=${PORT}/tcp`])).exitCode).toBe(0);
      expect(await connects(g, '192.168.122.1')).toBe(true);
      expect((await fw.cmd(['--zone=vnet', `--remove-port=${PORT}/tcp`])).exitCode).toBe(0);
      expect(await connects(g, '192.168.122.1')).toBe(false);
      // nothing new comes in from the wan to the guest either, not even with a route to it
      await wan.run('ip', ['route', 'add', '192.168.122.0/24', 'via', '198.51.100.2']);
      try {
        const ip = (await g.run('ip', ['-4', '-o', 'addr', 'show', 'dev', 'eth0'])).match(/inet (\S+)\//)![1]!;
        expect(await ping(wan, ip)).toBe(false);
      } finally {
        await wan.run('ip', ['route', 'del', '192.168.122.0/24']);
      }
    } finally {
      listener.kill('SIGKILL');
      await listener;
      untrackPid(listener.pid);
    }
  });

  it('`firewall-cmd --reload` drops runtime bindings; vnetd binds again and guests keep getting leases', async () => {
    expect((await fw.cmd(['--reload'])).exitCode).toBe(0);
    await waitFor('virbr0 back in zone vnet', async () => (await fw.zoneOf('virbr0')) === 'vnet');
    const g = await guestOn('virbr0', 'gport3');
    expect(await lease(g)).toMatch(/^192\.168\.122\.\d+$/);
    expect(await ping(g, WAN)).toBe(true);
    // a reload that finds no vnet zone (removed, being reinstalled) loses the binding; the reload
    // after it brings the zone back and vnetd binds again
    for (const f of fw.zoneFiles().filter((z) => z.startsWith('vnet'))) rmSync(path.join(fw.configDir, 'zones', `${f}.xml`));
    rmSync(path.join(fw.configDir, 'policies'), { recursive: true });
    expect((await fw.cmd(['--reload'])).exitCode).toBe(0);
    expect(await fw.zoneOf('virbr0')).toBe('no zone');
    // meanwhile a network cannot come up, and says why
    const refused = await vnetd.cli(['up', 'lab']);
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toContain('firewalld has no zone "vnet-isolated" for vnlab0: install vnet\'s firewalld zones and policies');
    expect((await host.tryRun('ip', ['link', 'show', 'vnlab0'])).exitCode).not.toBe(0);
    fw.installVnetFiles();
    expect((await fw.cmd(['--reload'])).exitCode).toBe(0);
    await waitFor('virbr0 back in zone vnet after the zone came back', async () => (await fw.zoneOf('virbr0')) === 'vnet');
    expect(await lease(g)).toMatch(/^192\.168\.122\.\d+$/);
  });

  it('firewalld stopped: vnet up and down still work; firewalld started again: vnetd binds at once', async () => {
    await fw.stopDaemon();
    expect((await vnetd.cli(['down', 'default', '--force'])).exitCode).toBe(0);
    const up = await vnetd.cli(['up', 'default']);
    expect(up.exitCode, up.stderr).toBe(0);
    await fw.startDaemon();
    await waitFor('virbr0 in zone vnet after firewalld started', async () => (await fw.zoneOf('virbr0')) === 'vnet');
    const g = await guestOn('virbr0', 'gport4');
    expect(await lease(g)).toMatch(/^192\.168\.122\.\d+$/);
    expect(await ping(g, WAN)).toBe(true);
  });

  it('an isolated network is bound to vnet-isolated: guests reach each other and the host\'s DHCP, firewalld forwards nothing else for them', async () => {
    expect((await vnetd.cli(['up', 'lab'])).exitCode).toBe(0);
    expect(await fw.zoneOf('vnlab0')).toBe('vnet-isolated');
    const g1 = await guestOn('vnlab0', 'lab1');
    const g2 = await guestOn('vnlab0', 'lab2');
    const l1 = await lease(g1);
    expect(l1).toMatch(/^10\.20\.0\.\d+$/);
    expect(await lease(g2)).toMatch(/^10\.20\.0\.\d+$/);
    expect(await ping(g2, l1!)).toBe(true);
    await g2.run('ip', ['route', 'replace', 'default', 'via', '10.20.0.1']);
    expect(await ping(g2, WAN)).toBe(false);
    // what firewalld compiled: its forward policies take traffic from virbr0 (NAT) and none from vnlab0
    const policies = await host.run('nft', ['list', 'chain', 'inet', 'firewalld', 'filter_FORWARD_POLICIES_pre']);
    expect(policies).toMatch(/iifname "virbr0" jump filter_FWD_policy_vnet-out/);
    expect(policies).not.toContain('vnlab0');
    expect((await vnetd.cli(['down', 'lab', '--force'])).exitCode).toBe(0);
    expect(await fw.zoneOf('vnlab0')).toBe('no zone');
  });

  it('`vnet down` removes the binding, and only vnet\'s', async () => {
    expect((await vnetd.cli(['down', 'default', '--force'])).exitCode).toBe(0);
    expect(await fw.zoneOf('virbr0')).toBe('no zone');
    expect((await fw.cmd(['--zone=vnet', '--list-interfaces'])).stdout).toBe('');
    expect((await fw.cmd(['--get-active-zones'])).stdout).toBe('');
    expect((await fw.cmd(['--zone=public', '--list-all'])).stdout).toBe(publicBefore);
  });
});

describe("vnet's zones and policies on their own", () => {
  it('a routed bridge is reached from the wan; the same bridge in the NAT zone is not', async () => {
    // a plain bridge, no vnet network: firewalld alone decides (vnet's table has no rules for it)
    await host.run('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    await host.run('ip', ['link', 'add', 'rt0', 'type', 'bridge']);
    await host.run('ip', ['addr', 'add', '10.31.0.1/24', 'dev', 'rt0']);
    await host.run('ip', ['link', 'set', 'rt0', 'up']);
    const g = await guestOn('rt0', 'rtport');
    await g.run('ip', ['addr', 'add', '10.31.0.10/24', 'dev', 'eth0']);
    await g.run('ip', ['route', 'add', 'default', 'via', '10.31.0.1']);
    await wan.run('ip', ['route', 'add', '10.31.0.0/24', 'via', '198.51.100.2']);
    expect((await fw.cmd(['--zone=vnet-routed', '--add-interface=rt0'])).exitCode).toBe(0);
    expect(await ping(wan, '10.31.0.10')).toBe(true);
    expect(await ping(g, WAN)).toBe(true);
    expect((await fw.cmd(['--zone=vnet', '--change-interface=rt0'])).exitCode).toBe(0);
    expect(await ping(wan, '10.31.0.10')).toBe(false);
    expect(await ping(g, WAN)).toBe(true);
    expect((await fw.cmd(['--zone=vnet-isolated', '--change-interface=rt0'])).exitCode).toBe(0);
    expect(await ping(g, WAN)).toBe(false);
    expect(await ping(g, '10.31.0.1')).toBe(true); // ICMP to the host, as in every zone of firewalld's default target
    expect((await fw.cmd(['--zone=vnet-isolated', '--remove-interface=rt0'])).exitCode).toBe(0);
  });
});
