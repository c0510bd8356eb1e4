/**
 * address = "auto" with the real vnetd and kernel: the first /24 of the pool that the host does not
 * route is picked when the network first comes up, served by DHCP, kept in $VNET_STATE_DIR across
 * vnetd restarts (also once the host no longer uses the subnet before it), picked again (and
 * logged) when the host took it meanwhile. vnet.toml's auto-pool moves the pool; an unknown key in
 * it stops vnetd, naming file and key.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupAll, createNetns, hostAndWan, veth, type Netns } from '../support/netns.js';
import { ROOT, Vnetd, vnetEnv, type VnetEnv } from '../support/vnetd.js';

const UDHCPC = path.join(ROOT, 'test/support/udhcpc.sh');

let host: Netns;
let env: VnetEnv;
let vnetd: Vnetd;

async function subnet(): Promise<{ state: string; subnet: string }> {
  const r = await vnetd.cli(['status', 'lab', '--json']);
  expect(r.exitCode, r.stderr).toBe(0);
  const s = JSON.parse(r.stdout) as { state: string; subnet: string } | Array<{ state: string; subnet: string }>;
  return Array.isArray(s) ? s[0]! : s;
}

const picks = () => JSON.parse(readFileSync(path.join(env.VNET_STATE_DIR, 'allocations.json'), 'utf8')) as { subnets: Record<string, string> };

beforeAll(async () => {
  ({ host } = await hostAndWan());
  await host.run('ip', ['tuntap', 'add', 'dev', 'vpn0', 'mode', 'tun']);
  await host.run('ip', ['link', 'set', 'vpn0', 'up']);
  await host.run('ip', ['route', 'add', '10.200.0.0/24', 'dev', 'vpn0']);
  env = vnetEnv();
  writeFileSync(path.join(env.VNET_CONFIG_DIR, 'networks', 'lab.toml'), 'bridge = "vnlab0"\naddress = "auto"\n');
  vnetd = await new Vnetd(host, env).start();
});

afterAll(async () => {
  await vnetd?.stop();
  await cleanupAll();
});

describe('address = "auto"', () => {
  it('picks the first /24 of the pool the host does not route, and guests get leases in it', async () => {
    const up = await vnetd.cli(['up', 'lab']);
    expect(up.exitCode, up.stderr).toBe(0);
    expect(up.stdout).toContain('lab: up (bridge vnlab0, 10.200.1.1/24)');
    expect(await subnet()).toEqual(expect.objectContaining({ state: 'up', subnet: '10.200.1.0/24' }));
    expect(picks().subnets).toEqual({ 'admin:lab': '10.200.1.0/24' });
    const g = await createNetns('vg');
    await veth(host, 'lab1', g, 'eth0');
    await host.run('ip', ['link', 'set', 'lab1', 'master', 'vnlab0']);
    const lease = /LEASE (\S+)/.exec(await g.run('busybox', ['udhcpc', '-i', 'eth0', '-n', '-q', '-t', '10', '-T', '1', '-s', UDHCPC]))?.[1];
    expect(lease).toMatch(/^10\.200\.1\.(\d+)$/);
    expect(vnetd.log).toContain('network \\"lab\\": address = \\"auto\\" picked 10.200.1.0/24');
    expect((await vnetd.cli(['check'])).stdout).toMatch(/^ok {5}lab \(\S+\/lab\.toml\): vnlab0 auto \(10\.200\.1\.1\/24\)$/m);
  });

  it('keeps it across vnetd restarts, also when the subnet before it became free', async () => {
    await vnetd.stop();
    await vnetd.start();
    expect(await subnet()).toMatchObject({ state: 'up', subnet: '10.200.1.0/24' });
    expect((await vnetd.cli(['down', 'lab', '--force'])).exitCode).toBe(0);
    await host.run('ip', ['route', 'del', '10.200.0.0/24', 'dev', 'vpn0']);
    await vnetd.stop();
    await vnetd.start();
    expect(await subnet()).toMatchObject({ state: 'down', subnet: '10.200.1.0/24' });
    expect((await vnetd.cli(['up', 'lab'])).exitCode).toBe(0);
    expect(await subnet()).toMatchObject({ state: 'up', subnet: '10.200.1.0/24' });
    expect((await vnetd.cli(['down', 'lab'])).exitCode).toBe(0);
  });

  it('picks again, and logs it, when the host took the subnet while the network was down', async () => {
    await host.run('ip', ['route', 'add', '10.200.1.0/25', 'dev', 'vpn0']);
    await vnetd.stop();
    await vnetd.start();
    const up = await vnetd.cli(['up', 'lab']);
    expect(up.exitCode, up.stderr).toBe(0);
    expect(await subnet()).toMatchObject({ state: 'up', subnet: '10.200.0.0/24' });
    expect(vnetd.log).toContain('network \\"lab\\": its subnet 10.200.1.0/24 is in use now; address = \\"auto\\" picked 10.200.0.0/24');
    expect(picks().subnets).toEqual({ 'admin:lab': '10.200.0.0/24' });
    expect((await vnetd.cli(['down', 'lab'])).exitCode).toBe(0);
  });

  it('auto-pool in vnet.toml moves the pool; an unknown key there stops vnetd naming file and key', async () => {
    await vnetd.stop();
    const toml = path.join(env.VNET_CONFIG_DIR, 'vnet.toml');
    writeFileSync(toml, 'auto-pool = "10.77.0.0/16"\n');
    await vnetd.start();
    expect((await vnetd.cli(['up', 'lab'])).exitCode).toBe(0);
    expect(await subnet()).toMatchObject({ subnet: '10.77.0.0/24' });
    await vnetd.stop();
    writeFileSync(toml, 'auto-pool = "10.77.0.0/16"\nauto-poll = "x"\n');
    await expect(vnetd.start()).rejects.toThrow(`${toml}: key \`auto-poll\`: unknown key; known keys are auto-pool`);
  });
});
