/**
 * Port forwards end to end, with the real vnetd, kernel and nft:
 *
 *   guest a 10.50.0.10 ─┐
 *   guest b 10.50.0.11 ─┴─ vnfw0 10.50.0.1/24 (nat) [host] up0 198.51.100.2 ── wan 198.51.100.1
 *                          vnfw1 10.51.0.1/24 (nat, "lab": a second network)
 *
 * Guest a runs a TCP server answering "PEERADDR PEERPORT" and a UDP sink; the wan, the host itself
 * and guest b (hairpin) reach them through the host's address 198.51.100.2.
 */
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupAll, createNetns, hostAndWan, trackPid, untrackPid, veth, waitFor, type Netns } from '../support/netns.js';
import { echoPeer, peerSeen, sendUdp, udpSink } from '../support/traffic.js';
import { Vnetd, vnetEnv, type VnetEnv } from '../support/vnetd.js';

const HOST = '198.51.100.2';
const WAN = '198.51.100.1';
const A = '10.50.0.10';
const B = '10.50.0.11';

let host: Netns;
let wan: Netns;
let ga: Netns;
let gb: Netns;
let env: VnetEnv;
let vnetd: Vnetd;
let received: () => string[];

/** A guest on `bridge` with a fixed address and the bridge as its gateway. */
async function guest(bridge: string, port: string, ip: string): Promise<Netns> {
  const g = await createNetns('vg');
  await veth(host, port, g, 'eth0');
  await host.run('ip', ['link', 'set', port, 'master', bridge]);
  await g.run('ip', ['addr', 'add', `${ip}/24`, 'dev', 'eth0']);
  await g.run('ip', ['route', 'add', 'default', 'via', '10.50.0.1']);
  return g;
}

/** Send datagrams until the sink saw one from `peer` carrying `tag` (UDP may be lost; the test bound is waitFor's). */
async function udpArrives(from: Netns, port: number, peer: string, tag: string): Promise<void> {
  await waitFor(`udp "${tag}" from ${peer} to ${HOST}:${port}`, async () => {
    await sendUdp(from, HOST, port, tag);
    return received().includes(`${peer} ${tag}`);
  });
}

async function cli(args: string[], opts: { user?: string } = {}) {
  return vnetd.cli(args, opts);
}

async function dnatElements(): Promise<string> {
  const r = await host.tryRun('nft', ['list', 'table', 'inet', 'vnet']);
  return r.stdout;
}

beforeAll(async () => {
  ({ host, wan } = await hostAndWan());
  env = vnetEnv();
  const nets = path.join(env.VNET_CONFIG_DIR, 'networks');
  writeFileSync(
    path.join(nets, 'web.toml'),
    'bridge = "vnfw0"\naddress = "10.50.0.1/24"\ndhcp-range = ["10.50.0.100", "10.50.0.199"]\n\n' +
      '[[forwards]]\nproto = "tcp"\nhost-port = 8022\nguest = "10.50.0.10"\nguest-port = 80\n\n' +
      `[[hosts]]\nname = "apple"\nip = "${A}"\n`,
  );
  writeFileSync(path.join(nets, 'lab.toml'), 'bridge = "vnfw1"\naddress = "10.51.0.1/24"\n');
  vnetd = await new Vnetd(host, env).start();
  const up = await cli(['up', 'web']);
  expect(up.exitCode, up.stderr).toBe(0);
  ga = await guest('vnfw0', 'fwa', A);
  gb = await guest('vnfw0', 'fwb', B);
  await echoPeer(ga, '0.0.0.0', 80);
  received = await udpSink(ga, '0.0.0.0', 5353);
});

afterAll(async () => {
  await vnetd?.stop();
  await cleanupAll();
});

describe('vnet forward', () => {
  it('a forward in the definition reaches the guest from the wan as soon as the network is up', async () => {
    expect((await peerSeen(wan, HOST, 8022))?.split(' ')[0]).toBe(WAN);
  });

  it('forward add: the wan reaches the guest over TCP and UDP on the host address, seen with its own address', async () => {
    const t = await cli(['forward', 'add', 'web', 'tcp', '8080', `${A}:80`]);
    expect(t.exitCode, t.stderr).toBe(0);
    expect(t.stdout).toContain('tcp 8080');
    const u = await cli(['forward', 'add', 'web', 'udp', '5353', A]);
    expect(u.exitCode, u.stderr).toBe(0);
    expect((await peerSeen(wan, HOST, 8080))?.split(' ')[0]).toBe(WAN);
    await udpArrives(wan, 5353, WAN, 'from-wan');
    const list = await cli(['forward', 'list', 'web', '--json']);
    const rows = JSON.parse(list.stdout) as Array<{ proto: string; hostPort: number; origin: string; active: boolean }>;
    expect(rows.map((r) => [r.proto, r.hostPort, r.origin, r.active])).toEqual([
      ['tcp', 8022, 'definition', true],
      ['tcp', 8080, 'runtime', true],
      ['udp', 5353, 'runtime', true],
    ]);
  });

  it('GUEST may be a static host\'s name: the forward goes to its fixed address', async () => {
    const t = await cli(['forward', 'add', 'web', 'tcp', '8081', 'apple:80']);
    expect(t.exitCode, t.stderr).toBe(0);
    expect((await peerSeen(wan, HOST, 8081))?.split(' ')[0]).toBe(WAN);
    const r = await cli(['forward', 'remove', 'web', 'tcp', '8081']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect((await cli(['forward', 'add', 'web', 'tcp', '8081', 'pear'])).stderr).toContain('[[hosts]] names: apple');
  });

  it('the host itself reaches the forward on its own address (output hook), TCP and UDP', async () => {
    expect(await peerSeen(host, HOST, 8080)).toBeDefined();
    await udpArrives(host, 5353, HOST, 'from-host');
  });

  it('hairpin: another guest of the network reaches it through the host address, answered through the host', async () => {
    // masqueraded to the bridge address: guest a answers the host, which hands the answer back to b
    expect((await peerSeen(gb, HOST, 8080))?.split(' ')[0]).toBe('10.50.0.1');
  });

  it('only connections to the host\'s own addresses are forwarded: a guest reaching port 8080 elsewhere gets there', async () => {
    await echoPeer(wan, '0.0.0.0', 8080);
    // the wan's server answers, seeing the host's masquerade address (guest a would have seen a 10.50.0.x)
    expect((await peerSeen(gb, WAN, 8080))?.split(' ')[0]).toBe(HOST);
  });

  it('refuses, naming the fact: a port another forward holds (any network), a local listener, a guest outside the subnet, a bad port', async () => {
    const twice = await cli(['forward', 'add', 'lab', 'tcp', '8080', '10.51.0.5']);
    expect(twice.exitCode).not.toBe(0);
    expect(twice.stderr).toContain('tcp host port 8080 is taken: network "web" forwards it (tcp 8080 → 10.50.0.10:80, added with `vnet forward add`)');
    const fromFile = await cli(['forward', 'add', 'web', 'tcp', '8022', A]);
    expect(fromFile.stderr).toContain('network "web" forwards it (tcp 8022 → 10.50.0.10:80, in ');
    await echoPeer(host, '0.0.0.0', 9090);
    const held = await cli(['forward', 'add', 'web', 'tcp', '9090', A]);
    expect(held.exitCode).not.toBe(0);
    expect(held.stderr).toContain('tcp host port 9090 is taken: a local listener holds it (0.0.0.0:9090, uid 0)');
    const outside = await cli(['forward', 'add', 'web', 'tcp', '8081', '10.51.0.5']);
    expect(outside.exitCode).not.toBe(0);
    expect(outside.stderr).toContain('guest 10.51.0.5 is outside network "web" (10.50.0.0/24)');
    const port = await cli(['forward', 'add', 'web', 'tcp', '70000', A]);
    expect(port.exitCode).toBe(2);
    expect(port.stderr).toContain('host port "70000" is not a port 1..65535');
    const list = JSON.parse((await cli(['forward', 'list', '--json'])).stdout) as unknown[];
    expect(list).toHaveLength(3);
    // a definition naming a held port is refused like any bad definition, by `vnet check` too
    const clash = path.join(env.VNET_CONFIG_DIR, 'networks', 'zclash.toml');
    writeFileSync(clash, 'bridge = "vnfw9"\naddress = "10.59.0.1/24"\n[[forwards]]\nproto = "tcp"\nhost-port = 8080\nguest = "10.59.0.5"\n');
    try {
      const check = await cli(['check']);
      expect(check.exitCode).toBe(1);
      expect(check.stderr).toContain('zclash.toml: key `forwards` = "tcp 8080 → 10.59.0.5:8080": tcp host port 8080 is taken: network "web" forwards it');
      const up = await cli(['up', 'zclash']);
      expect(up.exitCode).not.toBe(0);
      expect(up.stderr).toContain('tcp host port 8080 is taken');
    } finally {
      rmSync(clash);
    }
  });

  it('a user outside group "vnet" may list but not add or remove', async () => {
    const add = await cli(['forward', 'add', 'web', 'tcp', '8081', A], { user: 'nobody' });
    expect(add.exitCode).toBe(3);
    expect(add.stderr).toMatch(/may not add a port forward .* needs root or membership of group "vnet"/);
    const rm = await cli(['forward', 'remove', 'web', 'tcp', '8080'], { user: 'nobody' });
    expect(rm.exitCode).toBe(3);
    const list = await cli(['forward', 'list', 'web'], { user: 'nobody' });
    expect(list.exitCode, list.stderr).toBe(0);
    expect(list.stdout).toContain('8080');
    expect((await peerSeen(wan, HOST, 8080))?.split(' ')[0]).toBe(WAN);
  });

  it('vnet down removes every forward; forwards added at run time (one while down) survive a vnetd restart and apply on the next up', async () => {
    const down = await cli(['down', 'web']);
    expect(down.exitCode, down.stderr).toBe(0);
    expect(await peerSeen(wan, HOST, 8080)).toBeUndefined();
    expect(await peerSeen(wan, HOST, 8022)).toBeUndefined();
    expect(await dnatElements()).not.toContain('dnat-vnfw0');
    // a forward added while the network is down is kept for its next up
    const later = await cli(['forward', 'add', 'web', 'tcp', '8090', `${A}:80`]);
    expect(later.exitCode, later.stderr).toBe(0);
    expect(later.stdout).toBe('web: tcp 8090 → 10.50.0.10:80 (applies when the network is up)');
    expect(await dnatElements()).not.toContain('dnat-vnfw0');
    await vnetd.stop();
    await vnetd.start();
    const listed = JSON.parse((await cli(['forward', 'list', 'web', '--json'])).stdout) as Array<{ hostPort: number; active: boolean }>;
    expect(listed.map((f) => [f.hostPort, f.active])).toEqual([[8022, false], [8080, false], [8090, false], [5353, false]]);
    const up = await cli(['up', 'web']);
    expect(up.exitCode, up.stderr).toBe(0);
    // the bridge was deleted with the network: the guests' cables go into the new one
    for (const port of ['fwa', 'fwb']) await host.run('ip', ['link', 'set', port, 'master', 'vnfw0']);
    expect((await peerSeen(wan, HOST, 8080))?.split(' ')[0]).toBe(WAN);
    expect((await peerSeen(wan, HOST, 8090))?.split(' ')[0]).toBe(WAN);
    await udpArrives(wan, 5353, WAN, 'after-restart');
  });

  it('forward remove takes the forward away (and only it) without touching the others', async () => {
    const rm = await cli(['forward', 'remove', 'web', 'tcp', '8080']);
    expect(rm.exitCode, rm.stderr).toBe(0);
    expect(await peerSeen(wan, HOST, 8080)).toBeUndefined();
    expect(await peerSeen(host, HOST, 8080)).toBeUndefined();
    expect((await peerSeen(wan, HOST, 8022))?.split(' ')[0]).toBe(WAN);
    const again = await cli(['forward', 'remove', 'web', 'tcp', '8080']);
    expect(again.exitCode).toBe(4);
    expect(again.stderr).toContain('network "web" has no tcp forward of host port 8080');
    const fixed = await cli(['forward', 'remove', 'web', 'tcp', '8022']);
    expect(fixed.stderr).toContain('is in its definition');
  });

  it('an edited [[forwards]] applies with vnet reload, live', async () => {
    writeFileSync(
      path.join(env.VNET_CONFIG_DIR, 'networks', 'web.toml'),
      'bridge = "vnfw0"\naddress = "10.50.0.1/24"\ndhcp-range = ["10.50.0.100", "10.50.0.199"]\n\n[[forwards]]\nproto = "tcp"\nhost-port = 8023\nguest = "10.50.0.10"\nguest-port = 80\n\n' +
        `[[hosts]]\nname = "apple"\nip = "${A}"\n`,
    );
    const r = await cli(['reload', 'web']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe('web: applied forwards');
    expect((await peerSeen(wan, HOST, 8023))?.split(' ')[0]).toBe(WAN);
    expect(await peerSeen(wan, HOST, 8022)).toBeUndefined();
    // the run-time forwards stay
    expect((await peerSeen(wan, HOST, 8090))?.split(' ')[0]).toBe(WAN);
  });
});
