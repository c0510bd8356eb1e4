/**
 * vnet beside Docker's chains (test/support/docker-chains.ts: made with iptables-nft the way
 * Docker 28 makes them, FORWARD's policy DROP), in throwaway namespaces:
 *
 *   guest ── virbr0 [host: vnetd, Docker's chains] up0 ── wan 198.51.100.1
 *                          └─ docker0 172.17.0.1 ── container 172.17.0.2 (port 80 published, 8080 not)
 *
 * Docker's drop wins over vnet's accept; with `docker-compat = true` in vnet.toml vnet puts its
 * accepts in DOCKER-USER while a network is up, and takes exactly them away on down.
 */
import { execa } from 'execa';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forwardDrops } from '../../src/firewall/foreign-drop.js';
import { CONTAINER, dockerOn, PUBLISHED_PORT } from '../support/docker-chains.js';
import { cleanupAll, createNetns, hostAndWan, trackPid, veth, waitFor, type Netns } from '../support/netns.js';
import { ROOT, Vnetd, vnetEnv, type VnetEnv } from '../support/vnetd.js';

const UDHCPC = path.join(ROOT, 'test/support/udhcpc.sh');
const WAN = '198.51.100.1';
const UNPUBLISHED_PORT = 8080;

let host: Netns;
let wan: Netns;
let container: Netns;
let guest: Netns;
let env: VnetEnv;
let vnetd: Vnetd | undefined;
/** the filter table before vnet did anything: Docker's chains and an admin's rule in DOCKER-USER */
let filterBefore: string;

async function lease(g: Netns): Promise<string | undefined> {
  const r = await g.tryRun('busybox', ['udhcpc', '-i', 'eth0', '-n', '-q', '-t', '4', '-T', '1', '-s', UDHCPC]);
  return /LEASE (\S+)/.exec(r.stdout)?.[1];
}

async function ping(from: Netns, to: string): Promise<boolean> {
  return (await from.tryRun('busybox', ['ping', '-c', '1', '-W', '2', to])).exitCode === 0;
}

async function connects(from: Netns, to: string, port: number): Promise<boolean> {
  const code = 'import socket,sys\ntry:\n socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)\nexcept OSError:\n sys.exit(1)\n';
  return (await from.tryRun('python3', ['-c', code, to, String(port)])).exitCode === 0;
}

function listen(ns: Netns, port: number): void {
  const code = `import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(("0.0.0.0", ${port}))\ns.listen(16)\ntime.sleep(600)\n`;
  trackPid(execa('ip', ['netns', 'exec', ns.name, 'python3', '-c', code], { reject: false, stdin: 'ignore' }).pid);
}

const dockerUser = () => host.run('iptables', ['-t', 'filter', '-S', 'DOCKER-USER']);

beforeAll(async () => {
  ({ host, wan } = await hostAndWan());
  container = await dockerOn(host);
  // the admin's own rule, which vnet must leave where it is
  await host.run('iptables', ['-t', 'filter', '-A', 'DOCKER-USER', '-s', '203.0.113.7/32', '-j', 'DROP']);
  filterBefore = await host.run('iptables', ['-t', 'filter', '-S']);
  for (const port of [PUBLISHED_PORT, UNPUBLISHED_PORT]) listen(container, port);
  await waitFor('the container to listen', async () => (await connects(container, '127.0.0.1', PUBLISHED_PORT)) && connects(container, '127.0.0.1', UNPUBLISHED_PORT));
  guest = await createNetns('vg');
  env = vnetEnv();
  writeFileSync(path.join(env.VNET_CONFIG_DIR, 'networks', 'lab.toml'), 'bridge = "vnlab0"\naddress = "10.20.0.1/24"\ndhcp-range = ["10.20.0.10", "10.20.0.99"]\nforward = "isolated"\n');
}, 120_000);

afterAll(async () => {
  await vnetd?.stop();
  await cleanupAll();
});

describe('vnet and Docker\'s FORWARD drop', () => {
  it('the drop policy is found, with DOCKER-USER beside it (what `vnet doctor` reports)', async () => {
    const report = forwardDrops(JSON.parse(await host.run('nft', ['-j', 'list', 'ruleset'])));
    expect(report).toEqual({ drops: [{ family: 'ip', table: 'filter', chain: 'FORWARD', owner: 'docker' }], dockerUser: true });
  });

  it('without docker-compat the guest gets a lease but Docker drops its traffic, and DOCKER-USER is left alone', async () => {
    vnetd = await new Vnetd(host, env).start();
    expect((await vnetd.cli(['up', 'default'])).exitCode).toBe(0);
    await veth(host, 'gport', guest, 'eth0');
    await host.run('ip', ['link', 'set', 'gport', 'master', 'virbr0']);
    expect(await lease(guest)).toMatch(/^192\.168\.122\.\d+$/);
    expect(await ping(guest, WAN)).toBe(false);
    expect(await host.run('iptables', ['-t', 'filter', '-S'])).toBe(filterBefore);
  });

  it('with `docker-compat = true` vnet\'s accepts go into DOCKER-USER after the admin\'s rule: the guest reaches the wan, and Docker still decides about its containers', async () => {
    writeFileSync(path.join(env.VNET_CONFIG_DIR, 'vnet.toml'), '# let vnet keep its rules in Docker\'s DOCKER-USER chain\ndocker-compat = true\n');
    await vnetd!.stop(); // the network stays up; the next vnetd adopts it and lets it through
    vnetd = await new Vnetd(host, env).start();
    await waitFor('vnet\'s rules in DOCKER-USER', async () => (await dockerUser()).includes('vnet:virbr0:nat'));
    expect((await dockerUser()).split('\n')).toEqual([
      '-N DOCKER-USER',
      '-A DOCKER-USER -s 203.0.113.7/32 -j DROP',
      '-A DOCKER-USER -i virbr0 -o docker0 -m comment --comment "vnet:virbr0:nat" -j RETURN',
      '-A DOCKER-USER -i virbr0 -o br-+ -m comment --comment "vnet:virbr0:nat" -j RETURN',
      '-A DOCKER-USER -i virbr0 -m comment --comment "vnet:virbr0:nat" -j ACCEPT',
      '-A DOCKER-USER -o virbr0 -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -m comment --comment "vnet:virbr0:nat" -j ACCEPT',
    ]);
    expect(await lease(guest)).toMatch(/^192\.168\.122\.\d+$/);
    expect(await ping(guest, WAN)).toBe(true);
    // a guest gets no more of the containers than any other outsider: the published port only
    expect(await connects(guest, CONTAINER, PUBLISHED_PORT)).toBe(true);
    expect(await connects(guest, CONTAINER, UNPUBLISHED_PORT)).toBe(false);
    // nothing new comes in from the wan, not even with a route to the guest
    await wan.run('ip', ['route', 'add', '192.168.122.0/24', 'via', '198.51.100.2']);
    try {
      const ip = (await guest.run('ip', ['-4', '-o', 'addr', 'show', 'dev', 'eth0'])).match(/inet (\S+)\//)![1]!;
      expect(await ping(wan, ip)).toBe(false);
    } finally {
      await wan.run('ip', ['route', 'del', '192.168.122.0/24']);
    }
    // but a port forward does (vnet's DNAT): Docker's drop must not eat it
    const ip = (await guest.run('ip', ['-4', '-o', 'addr', 'show', 'dev', 'eth0'])).match(/inet (\S+)\//)![1]!;
    listen(guest, 2222);
    const add = await vnetd!.cli(['forward', 'add', 'default', 'tcp', '8022', `${ip}:2222`]);
    expect(add.exitCode, add.stderr).toBe(0);
    try {
      await waitFor('the forwarded port', () => connects(wan, '198.51.100.2', 8022), 10_000);
    } finally {
      expect((await vnetd!.cli(['forward', 'remove', 'default', 'tcp', '8022'])).exitCode).toBe(0);
    }
  });

  it('a rule of vnet\'s deleted by someone is put back when vnetd starts again; `vnet down` leaves the filter table exactly as it was', async () => {
    const complete = await dockerUser();
    await host.run('iptables', ['-t', 'filter', '-D', 'DOCKER-USER', '-i', 'virbr0', '-m', 'comment', '--comment', 'vnet:virbr0:nat', '-j', 'ACCEPT']);
    expect(await ping(guest, WAN)).toBe(false);
    await vnetd!.stop();
    vnetd = await new Vnetd(host, env).start();
    expect(await dockerUser()).toBe(complete);
    expect(await ping(guest, WAN)).toBe(true);
    expect((await vnetd!.cli(['down', 'default', '--force'])).exitCode).toBe(0);
    expect(await host.run('iptables', ['-t', 'filter', '-S'])).toBe(filterBefore);
  });

  it('an isolated network: bridged frames cross FORWARD too (br_netfilter), so its guests reach each other only through vnet\'s rule, and nothing else', async () => {
    expect((await vnetd!.cli(['up', 'lab'])).exitCode).toBe(0);
    const g1 = await createNetns('vg');
    const g2 = await createNetns('vg');
    await veth(host, 'lab1', g1, 'eth0');
    await veth(host, 'lab2', g2, 'eth0');
    for (const p of ['lab1', 'lab2']) await host.run('ip', ['link', 'set', p, 'master', 'vnlab0']);
    const l1 = await lease(g1);
    expect(l1).toMatch(/^10\.20\.0\.\d+$/);
    expect(await lease(g2)).toMatch(/^10\.20\.0\.\d+$/);
    expect(await ping(g2, l1!)).toBe(true);
    expect((await dockerUser()).split('\n').filter((l) => l.includes('vnlab0'))).toEqual(['-A DOCKER-USER -i vnlab0 -o vnlab0 -m comment --comment "vnet:vnlab0:isolated" -j ACCEPT']);
    // without it, Docker's drop cuts the guests apart
    await host.run('iptables', ['-t', 'filter', '-D', 'DOCKER-USER', '-i', 'vnlab0', '-o', 'vnlab0', '-m', 'comment', '--comment', 'vnet:vnlab0:isolated', '-j', 'ACCEPT']);
    expect(await ping(g2, l1!)).toBe(false);
    expect((await vnetd!.cli(['down', 'lab', '--force'])).exitCode).toBe(0);
    expect(await host.run('iptables', ['-t', 'filter', '-S'])).toBe(filterBefore);
  });
});

describe('docker-compat without Docker, and a bad vnet.toml', () => {
  it('no DOCKER-USER chain: the network comes up and nothing is made in iptables', async () => {
    const { host: bare } = await hostAndWan();
    const e = vnetEnv();
    writeFileSync(path.join(e.VNET_CONFIG_DIR, 'vnet.toml'), 'docker-compat = true\n');
    const d = await new Vnetd(bare, e).start();
    try {
      const up = await d.cli(['up', 'default']);
      expect(up.exitCode, up.stderr).toBe(0);
      expect(await bare.run('iptables', ['-t', 'filter', '-S'])).toBe('-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT');
      expect((await d.cli(['down', 'default'])).exitCode).toBe(0);
      expect(JSON.parse(await bare.run('nft', ['-j', 'list', 'tables'])).nftables.filter((x: { table?: unknown }) => x.table)).toEqual([]);
    } finally {
      await d.stop();
    }
  });

  it('vnetd refuses to start on an unknown key or a bad value, naming the file, the key and the value', async () => {
    const ns = await createNetns('vbad');
    for (const [text, says] of [
      ['docker-compat = "yes"\n', 'key `docker-compat` = "yes": expected true or false'],
      ['dockercompat = true\n', 'key `dockercompat`: unknown key; known keys are auto-pool, docker-compat'],
    ] as const) {
      const e = vnetEnv();
      const file = path.join(e.VNET_CONFIG_DIR, 'vnet.toml');
      writeFileSync(file, text);
      const d = new Vnetd(ns, e);
      await expect(d.start()).rejects.toThrow(`${file}: ${says}`);
      await d.stop();
    }
  });
});
