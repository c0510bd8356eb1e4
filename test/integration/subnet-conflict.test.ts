/**
 * Subnet safety while a network is up, with the real vnetd, kernel and a private dbus-daemon: a
 * VPN-style route over 192.168.122.0/24 appearing after `default` came up shows in `vnet status`
 * (JSON and text) and as the D-Bus signal SubnetConflict, tears nothing down, clears when the
 * route goes, and is there at once after a vnetd restart. `vnet check` names it too.
 */
import dbus from 'dbus-next';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DbusDaemon } from '../support/dbus-daemon.js';
import { cleanupAll, hostAndWan, waitFor, type Netns } from '../support/netns.js';
import { Vnetd, vnetEnv } from '../support/vnetd.js';

let bus: DbusDaemon;
let host: Netns;
let vnetd: Vnetd;
let conn: ReturnType<typeof dbus.sessionBus>;
const signals: string[][] = [];

interface Status {
  state: string;
  conflict?: { subnet: string; interface: string; detail: string };
}

async function status(): Promise<Status> {
  const r = await vnetd.cli(['status', 'default', '--json']);
  expect(r.exitCode, r.stderr).toBe(0);
  const s = JSON.parse(r.stdout) as Status | Status[];
  return Array.isArray(s) ? s[0]! : s;
}

const vpnRoute = ['192.168.122.0/24', 'dev', 'vpn0', 'metric', '50'];

beforeAll(async () => {
  bus = await DbusDaemon.start();
  ({ host } = await hostAndWan());
  await host.run('ip', ['tuntap', 'add', 'dev', 'vpn0', 'mode', 'tun']); // a VPN's kind of interface
  await host.run('ip', ['link', 'set', 'vpn0', 'up']);
  vnetd = await new Vnetd(host, vnetEnv({ VNET_DBUS_ADDRESS: bus.address })).start();
  conn = dbus.sessionBus({ busAddress: bus.address });
  await waitFor('vnetd on the bus', async () => {
    const names = (await (await conn.getProxyObject('org.freedesktop.DBus', '/org/freedesktop/DBus')).getInterface('org.freedesktop.DBus').ListNames!()) as string[];
    return names.includes('org.vnet.Vnet1');
  });
  const manager = (await conn.getProxyObject('org.vnet.Vnet1', '/org/vnet/Vnet1')).getInterface('org.vnet.Vnet1.Manager');
  manager.on('SubnetConflict', (network: string, subnet: string, iface: string) => signals.push([network, subnet, iface]));
  // AddMatch went out on this connection before any call below: the bus keeps a connection's order
  await manager.ListNetworks!();
});

afterAll(async () => {
  conn?.disconnect();
  await vnetd?.stop();
  await bus?.stop();
  await cleanupAll();
});

describe('a route that takes an up network\'s subnet', () => {
  it('shows in status and as SubnetConflict, tears nothing down, and clears when the route goes', async () => {
    expect((await vnetd.cli(['up', 'default'])).exitCode).toBe(0);
    expect((await status()).conflict).toBeUndefined();
    await host.run('ip', ['route', 'add', ...vpnRoute]);
    try {
      await waitFor('the conflict in status', async () => (await status()).conflict !== undefined);
      expect(await status()).toMatchObject({ state: 'up', conflict: { subnet: '192.168.122.0/24', interface: 'vpn0', detail: 'route 192.168.122.0/24' } });
      const text = await vnetd.cli(['status']);
      expect(text.stdout).toContain('default: subnet conflict: 192.168.122.0/24 is also in use by interface vpn0 (route 192.168.122.0/24); guests may not reach it');
      await waitFor('the SubnetConflict signal', () => signals.length === 1);
      expect(signals).toEqual([['default', '192.168.122.0/24', 'vpn0']]);
      // nothing was torn down
      expect(await host.run('ip', ['-br', 'addr', 'show', 'dev', 'virbr0'])).toContain('192.168.122.1/24');
      expect(vnetd.children('dnsmasq')).toHaveLength(1);
      expect(await host.run('nft', ['list', 'chain', 'inet', 'vnet', 'nat-virbr0'])).toContain('masquerade');
    } finally {
      await host.run('ip', ['route', 'del', ...vpnRoute]);
    }
    await waitFor('the conflict to clear', async () => (await status()).conflict === undefined);
    await waitFor('the clearing signal', () => signals.length === 2);
    expect(signals[1]).toEqual(['default', '', '']);
    expect((await vnetd.cli(['status'])).stdout).not.toContain('subnet conflict');
  });

  it('a wider route (a VPN pushing 192.168.0.0/16) is a conflict too, and is there at once after a vnetd restart', async () => {
    await host.run('ip', ['route', 'add', '192.168.0.0/16', 'dev', 'vpn0']);
    try {
      await waitFor('the conflict in status', async () => (await status()).conflict !== undefined);
      await vnetd.stop();
      await vnetd.start();
      expect(await status()).toMatchObject({ state: 'up', conflict: { interface: 'vpn0', detail: 'route 192.168.0.0/16' } });
    } finally {
      await host.run('ip', ['route', 'del', '192.168.0.0/16', 'dev', 'vpn0']);
    }
    await waitFor('the conflict to clear', async () => (await status()).conflict === undefined);
  });

  it('with the network down, `vnet up` is refused naming the interface, and changes nothing', async () => {
    expect((await vnetd.cli(['down', 'default'])).exitCode).toBe(0);
    await host.run('ip', ['route', 'add', ...vpnRoute]);
    try {
      const r = await vnetd.cli(['up', 'default']);
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toContain('subnet 192.168.122.0/24 is already in use by interface vpn0 (route 192.168.122.0/24)');
      expect((await host.tryRun('ip', ['link', 'show', 'virbr0'])).exitCode).not.toBe(0);
      // and `vnet check`, which needs no vnetd, names it the same way
      const check = await vnetd.cli(['check']);
      expect(check.exitCode).toBe(1);
      expect(check.stderr).toContain('error  built-in: network "default": subnet 192.168.122.0/24 is already in use by interface vpn0 (route 192.168.122.0/24); choose another `address`');
    } finally {
      await host.run('ip', ['route', 'del', ...vpnRoute]);
    }
  });
});
