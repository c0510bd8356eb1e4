/**
 * Every forward mode end to end, with the real vnetd, kernel, nft and dnsmasq:
 *
 *   guests ── vndmz0 10.40.0.1/24  (route)  ─┐
 *   guests ── vnupl0 10.42.0.1/24  (route via up1 only) ─┤
 *   guests ── vnopen0 10.41.0.1/24 (open)   ─┤ [host] up0 198.51.100.2 ── wan  198.51.100.1
 *   guests ── vnoff0 10.30.0.1/24  (nat via up0, SNAT .10-.11) ─┤        up1 203.0.113.2 ── wan2 203.0.113.1
 *   guests ── br0 (the admin's bridge, 172.31.250.1/24; vnet adds 192.0.2.1/24 and DHCP) ─┘
 *
 * What the wan side sees is read from a TCP server there that answers with the peer's address
 * and port. (NAT alone and "isolated" are test/integration/nat.test.ts and network-shapes.test.ts.)
 */
import { execa } from 'execa';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handoff } from '../support/handoff.js';
import { echoPeer, peerSeen, ping, sendUdp, udpSink } from '../support/traffic.js';
import { cleanupAll, createNetns, hostAndWan, pidsWithArg, trackPid, untrackPid, veth, waitFor, type Netns } from '../support/netns.js';
import { ROOT, Vnetd, vnetEnv, type VnetEnv } from '../support/vnetd.js';

const UDHCPC = path.join(ROOT, 'test/support/udhcpc.sh');
const WAN = '198.51.100.1';
const WAN2 = '203.0.113.1';

let host: Netns;
let wan: Netns;
let wan2: Netns;
let env: VnetEnv;
let vnetd: Vnetd;

/** A guest on `bridge` (a veth port) that took a DHCP lease; its address. */
async function guestOn(bridge: string, port: string): Promise<{ g: Netns; ip: string }> {
  const g = await createNetns('vg');
  await veth(host, port, g, 'eth0');
  await host.run('ip', ['link', 'set', port, 'master', bridge]);
  const out = await g.run('busybox', ['udhcpc', '-i', 'eth0', '-n', '-q', '-t', '10', '-T', '1', '-s', UDHCPC]);
  return { g, ip: /LEASE (\S+)/.exec(out)![1]! };
}

beforeAll(async () => {
  ({ host, wan } = await hostAndWan());
  wan2 = await createNetns('vw2');
  await veth(host, 'up1', wan2, 'wan0');
  await wan2.run('ip', ['addr', 'add', '203.0.113.1/24', 'dev', 'wan0']);
  await host.run('ip', ['addr', 'add', '203.0.113.2/24', 'dev', 'up1']);
  // the addresses an admin gives the host for SNAT (libvirt's <nat><address>): wan must reach them
  await host.run('ip', ['addr', 'add', '198.51.100.10/32', 'dev', 'up0']);
  await host.run('ip', ['addr', 'add', '198.51.100.11/32', 'dev', 'up0']);
  // the admin's own bridge, as NetworkManager would have made it
  await host.run('ip', ['link', 'add', 'br0', 'type', 'bridge']);
  await host.run('ip', ['addr', 'add', '172.31.250.1/24', 'dev', 'br0']);
  await host.run('ip', ['link', 'set', 'br0', 'up']);
  env = vnetEnv();
  const nets = path.join(env.VNET_CONFIG_DIR, 'networks');
  const range = (n: string) => `dhcp-range = ["${n}.10", "${n}.99"]\n`;
  writeFileSync(path.join(nets, 'dmz.toml'), `bridge = "vndmz0"\naddress = "10.40.0.1/24"\n${range('10.40.0')}forward = "route"\n`);
  writeFileSync(path.join(nets, 'uplinked.toml'), `bridge = "vnupl0"\naddress = "10.42.0.1/24"\n${range('10.42.0')}forward = "route"\nnat-interface = "up1"\n`);
  writeFileSync(path.join(nets, 'lab.toml'), `bridge = "vnopen0"\naddress = "10.41.0.1/24"\n${range('10.41.0')}forward = "open"\n`);
  writeFileSync(
    path.join(nets, 'office.toml'),
    `bridge = "vnoff0"\naddress = "10.30.0.1/24"\n${range('10.30.0')}nat-interface = "up0"\nnat-address = "198.51.100.10-198.51.100.11"\nnat-ports = "20000-20099"\n`,
  );
  writeFileSync(path.join(nets, 'lan.toml'), 'bridge = "br0"\nforward = "bridge"\naddress = "192.0.2.1/24"\ndhcp-range = ["192.0.2.100", "192.0.2.200"]\n');
  vnetd = await new Vnetd(host, env).start();
  await echoPeer(wan, WAN, 8080);
  await echoPeer(wan2, WAN2, 8080);
});

afterAll(async () => {
  await vnetd?.stop();
  await cleanupAll();
});

describe('forward = "route"', () => {
  it('guests reach the wan with their own addresses (no NAT) and the wan reaches them; the host is reachable', async () => {
    const up = await vnetd.cli(['up', 'dmz']);
    expect(up.exitCode, up.stderr).toBe(0);
    const { g, ip } = await guestOn('vndmz0', 'dmz1');
    expect(ip).toMatch(/^10\.40\.0\.\d+$/);
    await echoPeer(g, ip, 9090);
    expect(await ping(g, '10.40.0.1')).toBe(true);
    // without a route back the wan cannot answer: nothing masquerades
    expect(await peerSeen(g, WAN, 8080)).toBeUndefined();
    await wan.run('ip', ['route', 'add', '10.40.0.0/24', 'via', '198.51.100.2']);
    try {
      expect((await peerSeen(g, WAN, 8080))?.split(' ')[0]).toBe(ip);
      // and the other way: a connection the wan opens reaches the guest, from the wan's address
      expect((await peerSeen(wan, ip, 9090))?.split(' ')[0]).toBe(WAN);
    } finally {
      await wan.run('ip', ['route', 'del', '10.40.0.0/24']);
    }
    expect((await host.tryRun('nft', ['list', 'chain', 'inet', 'vnet', 'nat-vndmz0'])).exitCode).not.toBe(0);
    expect((await host.run('cat', ['/proc/sys/net/ipv4/ip_forward'])).trim()).toBe('1');
  });

  it('with nat-interface, routes through that uplink only, both ways', async () => {
    const up = await vnetd.cli(['up', 'uplinked']);
    expect(up.exitCode, up.stderr).toBe(0);
    const { g, ip } = await guestOn('vnupl0', 'upl1');
    await echoPeer(g, ip, 9090);
    await wan.run('ip', ['route', 'add', '10.42.0.0/24', 'via', '198.51.100.2']);
    await wan2.run('ip', ['route', 'add', '10.42.0.0/24', 'via', '203.0.113.2']);
    try {
      expect((await peerSeen(g, WAN2, 8080))?.split(' ')[0]).toBe(ip);
      expect((await peerSeen(wan2, ip, 9090))?.split(' ')[0]).toBe(WAN2);
      // up0 is not its uplink: neither out nor in
      expect(await peerSeen(g, WAN, 8080)).toBeUndefined();
      expect(await peerSeen(wan, ip, 9090)).toBeUndefined();
    } finally {
      await wan.run('ip', ['route', 'del', '10.42.0.0/24']);
      await wan2.run('ip', ['route', 'del', '10.42.0.0/24']);
    }
  });

  it('a guest cannot send from an address outside the network\'s subnet', async () => {
    const g = await createNetns('vg');
    await veth(host, 'dmz2', g, 'eth0');
    await host.run('ip', ['link', 'set', 'dmz2', 'master', 'vndmz0']);
    await g.run('ip', ['addr', 'add', '10.99.0.5/24', 'dev', 'eth0']);
    await g.run('ip', ['route', 'add', '10.40.0.1/32', 'dev', 'eth0']);
    await g.run('ip', ['route', 'add', 'default', 'via', '10.40.0.1']);
    await wan.run('ip', ['route', 'add', '10.99.0.0/24', 'via', '198.51.100.2']);
    try {
      expect(await peerSeen(g, WAN, 8080)).toBeUndefined();
    } finally {
      await wan.run('ip', ['route', 'del', '10.99.0.0/24']);
    }
  });
});

describe('forward = "open"', () => {
  it('vnet adds no rule at all: guests and the wan reach each other without NAT', async () => {
    const before = await host.run('nft', ['-j', 'list', 'table', 'inet', 'vnet']);
    const up = await vnetd.cli(['up', 'lab']);
    expect(up.exitCode, up.stderr).toBe(0);
    expect(await host.run('nft', ['-j', 'list', 'table', 'inet', 'vnet'])).toBe(before);
    expect(await host.run('nft', ['list', 'ruleset'])).not.toContain('vnopen0');
    const { g, ip } = await guestOn('vnopen0', 'open1');
    await echoPeer(g, ip, 9090);
    await wan.run('ip', ['route', 'add', '10.41.0.0/24', 'via', '198.51.100.2']);
    try {
      expect((await peerSeen(g, WAN, 8080))?.split(' ')[0]).toBe(ip);
      expect((await peerSeen(wan, ip, 9090))?.split(' ')[0]).toBe(WAN);
    } finally {
      await wan.run('ip', ['route', 'del', '10.41.0.0/24']);
    }
    expect(await ping(g, '10.41.0.1')).toBe(true);
  });
});

describe('forward = "nat" with nat-interface, nat-address and nat-ports', () => {
  it('translates to the SNAT addresses and ports out of up0, and forwards nothing out of the other uplink', async () => {
    const up = await vnetd.cli(['up', 'office']);
    expect(up.exitCode, up.stderr).toBe(0);
    const { g, ip } = await guestOn('vnoff0', 'off1');
    await echoPeer(g, ip, 9090);
    for (let i = 0; i < 3; i++) {
      const [addr, port] = (await peerSeen(g, WAN, 8080))!.split(' ');
      expect(['198.51.100.10', '198.51.100.11']).toContain(addr);
      expect(Number(port)).toBeGreaterThanOrEqual(20000);
      expect(Number(port)).toBeLessThanOrEqual(20099);
    }
    // up1 is not the NAT interface: nothing leaves by it, translated or not. The host's own
    // datagram takes the same link after the guest's: once it is there, the guest's would be too
    const sink = await udpSink(wan2, WAN2, 8081);
    await sendUdp(g, WAN2, 8081, 'guest');
    await sendUdp(host, WAN2, 8081, 'host');
    await waitFor('the host\'s datagram', () => sink().includes('203.0.113.2 host'));
    expect(sink()).toEqual(['203.0.113.2 host']);
    expect(await peerSeen(g, WAN2, 8080)).toBeUndefined();
    await wan2.run('ip', ['route', 'add', '10.30.0.0/24', 'via', '203.0.113.2']);
    try {
      expect(await peerSeen(g, WAN2, 8080)).toBeUndefined();
      // nor does the wan open connections in
      expect(await peerSeen(wan2, ip, 9090)).toBeUndefined();
    } finally {
      await wan2.run('ip', ['route', 'del', '10.30.0.0/24']);
    }
  });
});

describe('forward = "bridge" on the admin\'s bridge', () => {
  it('hands out taps through the helper, serves DHCP on the address it adds, and leaves the bridge as it found it', async () => {
    const up = await vnetd.cli(['up', 'lan']);
    expect(up.exitCode, up.stderr).toBe(0);
    const addrs = async () => ((JSON.parse(await host.run('ip', ['-j', 'addr', 'show', 'dev', 'br0']))[0].addr_info) as Array<{ local: string; prefixlen: number; scope: string }>)
      .filter((a) => a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`).sort();
    expect(await addrs()).toEqual(['172.31.250.1/24', '192.0.2.1/24']);
    const tap = await handoff('br0', { runtimeDir: env.VNET_RUNTIME_DIR, hold: true });
    try {
      expect(tap.result, tap.result.stderr).toMatchObject({ exit: 0, nfds: 1 });
      const link = JSON.parse(await host.run('ip', ['-j', 'link', 'show', 'dev', tap.result.tap!]))[0] as { master?: string };
      expect(link.master).toBe('br0');
      const { ip } = await guestOn('br0', 'lan1');
      expect(ip).toMatch(/^192\.0\.2\.(1\d\d|200)$/);
      expect(await host.run('nft', ['list', 'ruleset'])).not.toContain('br0');
    } finally {
      await tap.release();
    }
    const down = await vnetd.cli(['down', 'lan', '--force']);
    expect(down.exitCode, down.stderr).toBe(0);
    const br = JSON.parse(await host.run('ip', ['-j', 'link', 'show', 'dev', 'br0']))[0] as { flags: string[] };
    expect(br.flags).toContain('UP');
    expect(await addrs()).toEqual(['172.31.250.1/24']);
    expect(pidsWithArg(`--conf-file=${path.join(env.VNET_RUNTIME_DIR, 'dnsmasq', 'lan.conf')}`)).toEqual([]);
  });

  it('refuses to come up on a bridge that is not there, naming it', async () => {
    writeFileSync(path.join(env.VNET_CONFIG_DIR, 'networks', 'gone.toml'), 'bridge = "br9"\nforward = "bridge"\n');
    const r = await vnetd.cli(['up', 'gone']);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain('bridge br9 does not exist; forward = "bridge" uses a bridge vnet does not create');
    const check = await vnetd.cli(['check']);
    expect(check.exitCode).toBe(1);
    expect(check.stderr).toMatch(/^error {2}\S+\/gone\.toml: network "gone": bridge br9 does not exist; forward = "bridge" uses a bridge vnet does not create$/m);
    expect(check.stdout).toMatch(/^ok {5}lan \(\S+\/lan\.toml\): br0 192\.0\.2\.1\/24 \(bridge\)$/m);
  });
});

