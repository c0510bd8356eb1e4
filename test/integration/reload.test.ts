/**
 * Live reload of definitions: `vnet reload [NAME]` (and SIGHUP, and D-Bus Reload) applies what
 * changed in a running network's file without taking it down where the kernel allows; a change
 * that cannot apply live is refused (exit 5) naming the key. Until then requests use the running
 * copy, except allow lists, which apply at the next tap. Networks are named by their bridge too.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handoff } from '../support/handoff.js';
import { cleanupAll, createNetns, hostAndWan, veth, waitFor, type Netns } from '../support/netns.js';
import { ROOT, Vnetd, vnetEnv } from '../support/vnetd.js';

const UDHCPC = path.join(ROOT, 'test/support/udhcpc.sh');
let host: Netns;
let vnetd: Vnetd;
let file: string;

const ifindex = async (name: string) => (JSON.parse(await host.run('ip', ['-j', 'link', 'show', 'dev', name])) as Array<{ ifindex: number }>)[0]!.ifindex;
const addrs = async (name: string) =>
  (JSON.parse(await host.run('ip', ['-j', '-4', 'addr', 'show', 'dev', name])) as Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>)[0]!.addr_info.map((a) => `${a.local}/${a.prefixlen}`);
const dnsmasq = () => vnetd.children('dnsmasq');
const conf = () => readFileSync(path.join(vnetd.env.VNET_RUNTIME_DIR, 'dnsmasq', 'lab.conf'), 'utf8');
const define = (text: string) => writeFileSync(file, text);
const LAB = 'bridge = "vnlab0"\naddress = "10.20.0.1/24"\ndhcp-range = ["10.20.0.10", "10.20.0.99"]\non-demand = false\n';

beforeAll(async () => {
  ({ host } = await hostAndWan());
  const env = vnetEnv();
  file = path.join(env.VNET_CONFIG_DIR, 'networks', 'lab.toml');
  define(LAB);
  vnetd = await new Vnetd(host, env).start();
  expect((await vnetd.cli(['up', 'lab'])).exitCode).toBe(0);
});

afterAll(async () => {
  await vnetd?.stop();
  await cleanupAll();
});

describe('vnet reload', () => {
  it('a new DHCP range restarts dnsmasq only: same bridge, and a guest leases from the new range', async () => {
    const [index, pid] = [await ifindex('vnlab0'), dnsmasq()[0]];
    define(LAB.replace('["10.20.0.10", "10.20.0.99"]', '["10.20.0.100", "10.20.0.199"]'));
    const edited = await vnetd.cli(['status', 'lab']);
    expect(edited.stdout).toContain('lab: its definition was edited since it came up; `vnet reload lab` applies it');
    const r = await vnetd.cli(['reload', 'lab']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe('lab: applied dhcp-range');
    expect(await ifindex('vnlab0')).toBe(index);
    expect(dnsmasq()).toHaveLength(1);
    expect(dnsmasq()[0]).not.toBe(pid);
    expect(conf()).toContain('dhcp-range=10.20.0.100,10.20.0.199,');
    const guest = await createNetns('vg');
    await veth(host, 'labg', guest, 'eth0');
    await host.run('ip', ['link', 'set', 'labg', 'master', 'vnlab0']);
    const lease = /LEASE (\S+)/.exec(await guest.run('busybox', ['udhcpc', '-i', 'eth0', '-n', '-q', '-t', '10', '-T', '1', '-s', UDHCPC]))![1]!;
    expect(Number(lease.split('.')[3])).toBeGreaterThanOrEqual(100);
    expect((await vnetd.cli(['status', 'lab'])).stdout).not.toContain('was edited');
  });

  it('a new address moves the bridge, its rules and dnsmasq to it, on the same link', async () => {
    const index = await ifindex('vnlab0');
    define('bridge = "vnlab0"\naddress = "10.21.0.1/24"\ndhcp-range = ["10.21.0.10", "10.21.0.99"]\non-demand = false\n');
    const r = await vnetd.cli(['reload']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe('lab: applied address, dhcp-range');
    expect(await ifindex('vnlab0')).toBe(index);
    expect(await addrs('vnlab0')).toEqual(['10.21.0.1/24']);
    const table = await host.run('nft', ['list', 'table', 'inet', 'vnet']);
    expect(table).toContain('10.21.0.1');
    expect(table).not.toContain('10.20.0');
    expect(conf()).toContain('listen-address=10.21.0.1');
  });

  it('a new bridge name cannot apply live: exit 5 naming the key, and nothing changes; the running copy still serves', async () => {
    define('bridge = "vnlab1"\naddress = "10.21.0.1/24"\ndhcp-range = ["10.21.0.10", "10.21.0.99"]\non-demand = false\n');
    const r = await vnetd.cli(['reload', 'lab']);
    expect(r.exitCode).toBe(5);
    expect(r.stderr).toMatch(/network "lab": key `bridge` cannot change while the network runs/);
    expect(await addrs('vnlab0')).toEqual(['10.21.0.1/24']);
    expect((await host.tryRun('ip', ['link', 'show', 'vnlab1'])).exitCode).not.toBe(0);
    // requests still use the running copy: its bridge, by either name
    expect(JSON.parse((await vnetd.cli(['status', 'vnlab0', '--json'])).stdout)).toEqual([expect.objectContaining({ name: 'lab', bridge: 'vnlab0', state: 'up' })]);
    const tap = await handoff('vnlab0', { uid: 65534, runtimeDir: vnetd.env.VNET_RUNTIME_DIR });
    expect(tap.result, tap.result.stderr).toMatchObject({ exit: 0, nfds: 1 });
  });

  it('allow lists apply at the next tap, without a reload: revoking access never waits', async () => {
    define('bridge = "vnlab1"\naddress = "10.21.0.1/24"\ndhcp-range = ["10.21.0.10", "10.21.0.99"]\non-demand = false\nallow-users = ["root"]\n');
    const no = await handoff('vnlab0', { uid: 65534, runtimeDir: vnetd.env.VNET_RUNTIME_DIR });
    expect(no.result.exit).toBe(1);
    expect(no.result.stderr).toMatch(/access denied: network lab allows users \[root\]/);
  });

  it('only root or group vnet may reload; SIGHUP reloads every running network', async () => {
    define('bridge = "vnlab0"\naddress = "10.21.0.1/24"\ndhcp-range = ["10.21.0.10", "10.21.0.99"]\non-demand = false\ndomain = "lab.test"\n');
    const r = await vnetd.cli(['reload'], { user: 'nobody' });
    expect(r.exitCode).toBe(3);
    expect(conf()).not.toContain('domain=lab.test');
    process.kill(vnetd.pid!, 'SIGHUP');
    await waitFor('SIGHUP to apply the domain', () => conf().includes('domain=lab.test'));
    expect((await vnetd.cli(['status', 'lab'])).stdout).not.toContain('was edited');
  });
});

describe('names as people say them', () => {
  it('up, status and down take the bridge\'s name as well as the network\'s', async () => {
    expect((await vnetd.cli(['up', 'virbr0'])).stdout).toMatch(/^default: up \(bridge virbr0, 192\.168\.122\.1\/24\)$/m);
    expect(JSON.parse((await vnetd.cli(['status', 'virbr0', '--json'])).stdout)).toEqual([expect.objectContaining({ name: 'default', state: 'up' })]);
    expect((await vnetd.cli(['down', 'virbr0'])).stdout).toBe('default: down');
  });

  it('vnet check refuses a network named like another network\'s bridge', async () => {
    const clash = path.join(vnetd.env.VNET_CONFIG_DIR, 'networks', 'virbr0.toml');
    writeFileSync(clash, 'bridge = "vnclash0"\naddress = "10.99.0.1/24"\n');
    try {
      const r = await vnetd.cli(['check']);
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(/virbr0\.toml: network name "virbr0" is the bridge of network "default"/);
    } finally {
      writeFileSync(clash, '');
      (await import('node:fs')).rmSync(clash);
    }
  });
});
