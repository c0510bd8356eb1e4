/**
 * End to end with a real guest: QEMU run as an unprivileged user (nobody) with
 * `-netdev bridge,br=virbr0,helper=vnet-bridge-helper`. The default network is down
 * before QEMU starts, comes up on demand, the guest gets a lease and pings the wan
 * through NAT, and idle-down seconds after QEMU exits the network is gone.
 */
import { copyFileSync, chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureGuest, runGuest } from '../support/guest.js';
import { cleanupAll, hostAndWan, tempDir, waitFor, type Netns } from '../support/netns.js';
import { HELPER, Vnetd, vnetEnv } from '../support/vnetd.js';

let host: Netns;
let vnetd: Vnetd;
let helper: string;

async function status() {
  return (await vnetd.call('status', { name: 'default' })) as { state: string; taps: Array<{ name: string; uid: number; pid: number }> };
}

beforeAll(async () => {
  await ensureGuest();
  ({ host } = await hostAndWan());
  const env = vnetEnv();
  writeFileSync(
    path.join(env.VNET_CONFIG_DIR, 'networks', 'default.toml'),
    'bridge = "virbr0"\naddress = "192.168.122.1/24"\ndhcp-range = ["192.168.122.2", "192.168.122.254"]\non-demand = true\nidle-down = 2\n',
  );
  vnetd = await new Vnetd(host, env).start();
  // the helper where nobody can run it, whatever the checkout's folder permissions
  const dir = tempDir('vnet-helper-');
  chmodSync(dir, 0o755);
  helper = path.join(dir, 'vnet-bridge-helper');
  copyFileSync(HELPER, helper);
  chmodSync(helper, 0o755);
}, 300_000);

afterAll(async () => {
  await vnetd?.stop();
  await cleanupAll();
});

describe('QEMU as nobody through vnet-bridge-helper', () => {
  it('on demand: lease, NAT to the wan, then idle-down removes everything', async () => {
    expect((await status()).state).toBe('down');
    expect((await host.links()).map((l) => l.ifname)).not.toContain('virbr0');

    let seenTap: { name: string; uid: number; pid: number } | undefined;
    const poll = setInterval(async () => {
      const s = await status().catch(() => undefined);
      if (s?.taps[0]) seenTap = s.taps[0];
    }, 200);
    const run = await runGuest({
      ns: host,
      user: 'nobody',
      env: { VNET_RUNTIME_DIR: vnetd.env.VNET_RUNTIME_DIR },
      netdev: ['-netdev', `bridge,id=n0,br=virbr0,helper=${helper}`, '-device', 'virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56'],
      append: 'vnet.hostname=vnetguest',
      timeoutMs: 120_000,
    }).finally(() => clearInterval(poll));

    expect(run.timedOut, run.console).toBe(false);
    expect(run.markers.lease, run.console).toMatch(/^192\.168\.122\.\d+$/);
    expect(run.markers.router).toBe('192.168.122.1');
    expect(run.markers.pings, run.console).toEqual({ '198.51.100.1': true });
    expect(run.markers.poweroff).toBe(true);

    // while it ran, status listed its tap, owned by nobody
    expect(seenTap).toMatchObject({ uid: 65534 });
    const { leases, next } = (await vnetd.call('leases', { name: 'default' })) as { leases: Array<{ mac: string; ip: string; hostname: string }>; next: string | null };
    expect(leases).toEqual([expect.objectContaining({ mac: '52:54:00:12:34:56', ip: run.markers.lease, hostname: 'vnetguest' })]);
    expect(next).toBeNull();

    // QEMU is gone: its tap went with it; after idle-down (2 s) so does the network
    await waitFor('idle-down after QEMU left', async () => (await status()).state === 'down', 15_000);
    const links = await host.links();
    expect(links.map((l) => l.ifname)).not.toContain('virbr0');
    expect(await host.taps()).toEqual([]);
    expect((await host.tryRun('nft', ['list', 'table', 'inet', 'vnet'])).exitCode).not.toBe(0);
    expect(vnetd.children('dnsmasq')).toEqual([]);
  }, 180_000); // the guest may take up to 120 s, idle-down up to 15 s more

  it('a user denied by bridge.conf gets the helper\'s one-line refusal from QEMU', async () => {
    writeFileSync(path.join(vnetd.env.VNET_QEMU_CONF_DIR, 'bridge.conf'), 'deny virbr0\n');
    try {
      const run = await runGuest({
        ns: host,
        user: 'nobody',
        env: { VNET_RUNTIME_DIR: vnetd.env.VNET_RUNTIME_DIR },
        netdev: ['-netdev', `bridge,id=n0,br=virbr0,helper=${helper}`, '-device', 'virtio-net-pci,netdev=n0'],
        timeoutMs: 60_000,
      });
      expect(run.exitCode).not.toBe(0);
      expect(run.console).toMatch(/vnet-bridge-helper: access denied by acl file: deny virbr0/);
      expect(run.console).toMatch(/bridge helper failed/);
      expect((await status()).state).toBe('down');
      expect(await host.taps()).toEqual([]);
    } finally {
      writeFileSync(path.join(vnetd.env.VNET_QEMU_CONF_DIR, 'bridge.conf'), '');
    }
  }, 90_000); // QEMU is given up to 60 s
});
