/**
 * Upgrade in place: a vnetd of this version starts where vnet 0.1 left off — its state.json
 * (format 1), its bridge, its one-table ruleset (test/fixtures/v0.1, what 0.1 wrote for the
 * built-in default), forwarding it switched on, a guest on the bridge and a VM's tap — and adopts
 * all of it: the guest's traffic through NAT never stops, the tap is the network's, the table is
 * converted in one transaction, and a later `down` restores forwarding as 0.1 would have.
 */
import { execa } from 'execa';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bridgeMac } from '../../src/desired/contributors/link.js';
import { cleanupAll, createNetns, hostAndWan, trackPid, veth, waitFor, type Netns } from '../support/netns.js';
import { ROOT, Vnetd, vnetEnv, type VnetEnv } from '../support/vnetd.js';

let host: Netns;
let wan: Netns;
let guest: Netns;
let env: VnetEnv;
let vnetd: Vnetd | undefined;

async function ifindex(ns: Netns, name: string): Promise<number> {
  return (JSON.parse(await ns.run('ip', ['-j', 'link', 'show', 'dev', name])) as Array<{ ifindex: number }>)[0]!.ifindex;
}

beforeAll(async () => {
  ({ host, wan } = await hostAndWan());
  guest = await createNetns('vg');
  env = vnetEnv();
  // what vnet 0.1 left in the kernel for `default`
  await host.run('ip', ['link', 'add', 'virbr0', 'address', bridgeMac('virbr0'), 'type', 'bridge']);
  await host.run('sysctl', ['-qw', 'net.ipv6.conf.virbr0.disable_ipv6=1']);
  await host.run('ip', ['addr', 'add', '192.168.122.1/24', 'dev', 'virbr0']);
  await host.run('ip', ['link', 'set', 'virbr0', 'up']);
  await host.run('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  await host.run('nft', ['-j', '-f', path.join(ROOT, 'test/fixtures/v0.1/ruleset-default.json')]);
  // a guest, and a VM's tap (held by a process, as QEMU holds it)
  await veth(host, 'vgport', guest, 'eth0');
  await host.run('ip', ['link', 'set', 'vgport', 'master', 'virbr0']);
  await guest.run('ip', ['addr', 'add', '192.168.122.50/24', 'dev', 'eth0']);
  await guest.run('ip', ['route', 'add', 'default', 'via', '192.168.122.1']);
});

afterAll(async () => {
  await vnetd?.stop();
  await cleanupAll();
});

describe('upgrade from vnet 0.1', () => {
  it('adopts the network, its tap and its guest without interrupting traffic, and converts the table', async () => {
    const tapHolder = execa('ip', ['netns', 'exec', host.name, process.execPath, path.join(ROOT, 'test/support/drivers/tap.mjs'), JSON.stringify({ bridge: 'virbr0', ownerUid: 1000 })], { stdin: 'pipe', buffer: false });
    trackPid(tapHolder.pid);
    try {
      const line = await new Promise<string>((resolve, reject) => {
        tapHolder.stdout!.once('data', (d: Buffer) => resolve(d.toString()));
        tapHolder.once('exit', () => reject(new Error('tap driver exited')));
      });
      const tap = (JSON.parse(line) as { tap: { name: string }; link: { index: number } });
      const bridgeIndex = await ifindex(host, 'virbr0');
      mkdirSync(env.VNET_RUNTIME_DIR, { recursive: true });
      writeFileSync(
        path.join(env.VNET_RUNTIME_DIR, 'state.json'),
        JSON.stringify({
          version: 1,
          owned: { virbr0: bridgeIndex },
          pending: [],
          forwardingByVnet: true,
          nat: [{ bridge: 'virbr0', cidr: '192.168.122.0/24', address: '192.168.122.1' }],
          networks: { default: { state: 'up', pinned: true, bridge: 'virbr0', taps: [{ name: tap.tap.name, ifindex: tap.link.index, uid: 1000, pid: tapHolder.pid }] } },
        }),
      );
      // the guest pings the wan through NAT every 50 ms while the new vnetd takes over
      const pinger = execa('ip', ['netns', 'exec', guest.name, 'busybox', 'ping', '-i', '0.05', '198.51.100.1'], { reject: false, buffer: true });
      trackPid(pinger.pid);
      await waitFor('the guest to reach the wan', async () => (await guest.tryRun('busybox', ['ping', '-c', '1', '-W', '1', '198.51.100.1'])).exitCode === 0);
      vnetd = await new Vnetd(host, env).start();
      const s = (await vnetd.call('status', { name: 'default' })) as { state: string; pinned: boolean; taps: Array<{ name: string; uid: number }> };
      expect(s).toMatchObject({ state: 'up', pinned: true, taps: [{ name: tap.tap.name, uid: 1000 }] });
      expect(await ifindex(host, 'virbr0')).toBe(bridgeIndex);
      const table = await host.run('nft', ['list', 'table', 'inet', 'vnet']);
      expect(table).toContain('chain nat-virbr0');
      expect(table).toContain('oifname vmap @to_bridge');
      const state = JSON.parse(readFileSync(path.join(env.VNET_RUNTIME_DIR, 'state.json'), 'utf8')) as { version: number; sysctls: Record<string, string> };
      expect(state).toMatchObject({ version: 2, sysctls: { 'net/ipv4/ip_forward': '0' } });
      // a second of traffic after the takeover, then count what was lost
      await new Promise((r) => setTimeout(r, 1000));
      process.kill(pinger.pid!, 'SIGINT');
      const out = String((await pinger).stdout);
      const m = /(\d+) packets transmitted, (\d+) packets received/.exec(out);
      expect(m, out).not.toBeNull();
      const sent = Number(m![1]);
      expect(sent).toBeGreaterThan(20);
      // every echo got its reply, but for the one in flight when ping was stopped
      const got = new Set([...out.matchAll(/seq=(\d+)/g)].map((x) => Number(x[1])));
      const missing = Array.from({ length: sent }, (_, i) => i).filter((i) => !got.has(i));
      expect(missing.filter((i) => i !== sent - 1), out).toEqual([]);
      // the tap is the network's: it keeps the network up, and `down` refuses while it lives
      const down = await vnetd.cli(['down', 'default']);
      expect(down.exitCode).toBe(5); // busy
      expect(down.stderr).toContain(tap.tap.name);
    } finally {
      tapHolder.stdin!.end();
      await tapHolder.catch(() => undefined);
    }
    await waitFor('the tap to go', async () => !(await host.taps()).length);
    expect((await vnetd.cli(['down', 'default'])).exitCode).toBe(0);
    // 0.1 switched forwarding on; the journal it left says so, and down puts it back
    expect((await host.run('cat', ['/proc/sys/net/ipv4/ip_forward'])).trim()).toBe('0');
    expect((await host.tryRun('nft', ['list', 'table', 'inet', 'vnet'])).exitCode).not.toBe(0);
  });
});
