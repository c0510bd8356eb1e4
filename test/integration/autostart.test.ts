/**
 * autostart = true with the real vnetd: the network is up and pinned as soon as vnetd serves,
 * VNET_IDLE_EXIT does not stop vnetd while it is up, it is up again after a vnetd restart, a
 * `vnet down` holds for the rest of the boot, and after a reboot (no bridge, an empty runtime
 * folder) it comes up again.
 */
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupAll, hostAndWan, waitFor, type Netns } from '../support/netns.js';
import { Vnetd, vnetEnv, type VnetEnv } from '../support/vnetd.js';

let host: Netns;
let env: VnetEnv;
let vnetd: Vnetd | undefined;

interface Status {
  name: string;
  state: string;
  pinned: boolean;
}

async function status(d: Vnetd): Promise<Status> {
  const r = await d.cli(['status', 'sys', '--json']);
  expect(r.exitCode, r.stderr).toBe(0);
  const s = JSON.parse(r.stdout) as Status | Status[];
  return Array.isArray(s) ? s[0]! : s;
}

const bridgeAddrs = async () => {
  const r = await host.tryRun('ip', ['-j', 'addr', 'show', 'dev', 'vnsys0']);
  if (r.exitCode !== 0) return undefined;
  return (JSON.parse(r.stdout)[0].addr_info as Array<{ local: string; prefixlen: number }>).map((a) => `${a.local}/${a.prefixlen}`);
};

beforeAll(async () => {
  ({ host } = await hostAndWan());
  env = vnetEnv();
  writeFileSync(path.join(env.VNET_CONFIG_DIR, 'networks', 'sys.toml'), 'bridge = "vnsys0"\naddress = "10.70.0.1/24"\ndhcp-range = ["10.70.0.10", "10.70.0.99"]\nautostart = true\non-demand = false\n');
});

afterAll(async () => {
  await vnetd?.stop();
  await cleanupAll();
});

describe('autostart', () => {
  it('is up and pinned once vnetd serves, and VNET_IDLE_EXIT does not stop vnetd while it is', async () => {
    vnetd = await new Vnetd(host, { ...env, VNET_IDLE_EXIT: '1' }).start();
    expect(await status(vnetd)).toMatchObject({ state: 'up', pinned: true });
    expect(await bridgeAddrs()).toContain('10.70.0.1/24');
    expect(vnetd.children('dnsmasq')).toHaveLength(1);
    // what is tested is an absence (no exit), so there is nothing to wait for: three idle periods
    await new Promise((r) => setTimeout(r, 3000));
    expect(vnetd.alive()).toBe(true);
    expect(vnetd.log).not.toContain('vnetd stopping');
    // with the network down nothing holds it: the same vnetd exits by itself
    expect((await vnetd.cli(['down', 'sys'])).exitCode).toBe(0);
    await waitFor('vnetd to exit when idle', () => !vnetd!.alive());
    expect(vnetd.log).toMatch(/idle for 1 s with no network up/);
    await vnetd.stop();
  });

  it('a `vnet down` holds across vnetd restarts of the same boot; `vnet up` then a restart keeps it up', async () => {
    vnetd = new Vnetd(host, env);
    await vnetd.start();
    expect(await status(vnetd)).toMatchObject({ state: 'down' });
    expect(await bridgeAddrs()).toBeUndefined();
    expect((await vnetd.cli(['up', 'sys'])).exitCode).toBe(0);
    await vnetd.stop();
    await vnetd.start();
    expect(await status(vnetd)).toMatchObject({ state: 'up', pinned: true });
  });

  it('after a reboot (the bridge gone, an empty runtime folder) it comes up again', async () => {
    await vnetd!.stop();
    await host.run('ip', ['link', 'del', 'vnsys0']);
    rmSync(env.VNET_RUNTIME_DIR, { recursive: true, force: true });
    await vnetd!.start();
    expect(await status(vnetd!)).toMatchObject({ state: 'up', pinned: true });
    expect(await bridgeAddrs()).toContain('10.70.0.1/24');
  });
});
