/**
 * Proves the QEMU test guest works without vnet: a hand-made NAT network (bridge, dnsmasq,
 * masquerade) in a throwaway "host" namespace, the guest on a tap enslaved to the bridge.
 * If this fails, an e2e failure is the fixture's fault, not vnet's.
 */
import { execa } from 'execa';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILD_SCRIPT, ensureGuest, runGuest, type GuestImage, type GuestResult } from '../support/guest.js';
import { cleanupAll, hostAndWan, tempDir, trackPid, waitFor, type Topology } from '../support/netns.js';

const GUEST_TIMEOUT_MS = 90_000;

let topo: Topology;
let image: GuestImage;
let dir: string;
let dnsmasqPid: number | undefined;
let dnsmasqExit: Promise<unknown> | undefined;

function ipInRange(ip: string | undefined, first: number, last: number): boolean {
  const m = /^10\.99\.0\.(\d+)$/.exec(ip ?? '');
  return m !== null && Number(m[1]) >= first && Number(m[1]) <= last;
}

function explain(r: GuestResult): string {
  return `exit ${String(r.exitCode)}, timedOut ${r.timedOut}, console:\n${r.console}`;
}

beforeAll(async () => {
  image = await ensureGuest();
  topo = await hostAndWan();
  dir = tempDir('vnet-guest-');
  const { host } = topo;
  await host.run('ip', ['link', 'add', 'br0', 'type', 'bridge']);
  await host.run('ip', ['addr', 'add', '10.99.0.1/24', 'dev', 'br0']);
  await host.run('ip', ['link', 'set', 'br0', 'up']);
  // tap0 for QEMU as root, tap1 owned by nobody for QEMU as nobody.
  await host.run('ip', ['tuntap', 'add', 'dev', 'tap0', 'mode', 'tap']);
  await host.run('ip', ['tuntap', 'add', 'dev', 'tap1', 'mode', 'tap', 'user', 'nobody']);
  for (const tap of ['tap0', 'tap1']) await host.run('ip', ['link', 'set', tap, 'master', 'br0', 'up']);
  await host.run('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
  await host.run('nft', [
    'add table ip t; ' +
      'add chain ip t post { type nat hook postrouting priority 100 ; } ; ' +
      'add rule ip t post ip saddr 10.99.0.0/24 oifname "up0" masquerade',
  ]);
  const pidFile = path.join(dir, 'dnsmasq.pid');
  const dnsmasq = execa(
    'ip',
    [
      'netns', 'exec', host.name, 'dnsmasq',
      '--keep-in-foreground', '--conf-file=/dev/null', '--bind-interfaces',
      '--interface=br0', '--except-interface=lo', '--user=root',
      '--dhcp-range=10.99.0.10,10.99.0.50',
      `--dhcp-leasefile=${path.join(dir, 'leases')}`,
      `--pid-file=${pidFile}`,
    ],
    { reject: false, stdin: 'ignore', all: true },
  );
  dnsmasqPid = dnsmasq.pid;
  trackPid(dnsmasqPid);
  let exited: string | undefined;
  dnsmasqExit = dnsmasq.then((r) => {
    exited = `dnsmasq exited with ${String(r.exitCode ?? r.signal)}: ${String(r.all)}`;
  });
  await waitFor('dnsmasq to write its pid file', () => {
    if (exited !== undefined) throw new Error(exited);
    return existsSync(pidFile);
  }, 10_000);
});

afterAll(async () => {
  if (dnsmasqPid) {
    try {
      process.kill(dnsmasqPid, 'SIGKILL');
    } catch {
      /* gone */
    }
    await dnsmasqExit;
  }
  await cleanupAll();
});

describe('test guest on a hand-made NAT bridge', () => {
  it('builds a world-readable kernel and initramfs, reusing the cache', async () => {
    const t0 = Date.now();
    const again = await execa('sh', [BUILD_SCRIPT, path.dirname(image.kernel)], { all: true });
    expect(String(again.all)).toMatch(/up to date/);
    expect(Date.now() - t0).toBeLessThan(10_000);
    for (const f of [image.kernel, image.initrd]) {
      const r = await execa('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'test', '-r', f], { reject: false });
      expect(r.exitCode, `${f} must be readable by nobody`).toBe(0);
    }
  });

  it('as root on a tap: leases an address from dnsmasq and pings the wan through masquerade', async () => {
    const r = await runGuest({
      ns: topo.host,
      netdev: ['-netdev', 'tap,id=n0,ifname=tap0,script=no,downscript=no', '-device', 'virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56'],
      append: 'vnet.hostname=guest-root',
      timeoutMs: GUEST_TIMEOUT_MS,
    });
    expect(r.timedOut, explain(r)).toBe(false);
    expect(r.exitCode, explain(r)).toBe(0);
    expect(ipInRange(r.markers.lease, 10, 50), explain(r)).toBe(true);
    expect(r.markers.prefix).toBe(24);
    expect(r.markers.router).toBe('10.99.0.1');
    expect(r.markers.pings).toEqual({ '198.51.100.1': true });
    expect(r.markers.ping).toBe(true);
    expect(r.markers.poweroff).toBe(true);
    // dnsmasq recorded the same lease for the guest's MAC, with the hostname it sent.
    const leases = readFileSync(path.join(dir, 'leases'), 'utf8');
    const line = leases.split('\n').find((l) => l.includes(' 52:54:00:12:34:56 '));
    expect(line?.split(' ').slice(1, 4), leases).toEqual(['52:54:00:12:34:56', r.markers.lease, 'guest-root']);
  });

  it('as nobody: boots from the cache, leases, and reports an unreachable target as failed', async () => {
    // /dev/net/tun is 0600 here: give nobody an openable node, bound over it only in
    // QEMU's private mount namespace. tap1 is a persistent tap owned by nobody.
    const tun = path.join(dir, 'tun');
    await execa('mknod', ['-m', '0666', tun, 'c', '10', '200']);
    const r = await runGuest({
      ns: topo.host,
      user: 'nobody',
      binds: [{ source: tun, target: '/dev/net/tun' }],
      netdev: ['-netdev', 'tap,id=n1,ifname=tap1,script=no,downscript=no', '-device', 'virtio-net-pci,netdev=n1,mac=52:54:00:12:34:57'],
      append: 'vnet.ping=198.51.100.1,198.51.100.77',
      timeoutMs: GUEST_TIMEOUT_MS,
    });
    expect(r.timedOut, explain(r)).toBe(false);
    expect(r.exitCode, explain(r)).toBe(0);
    expect(ipInRange(r.markers.lease, 10, 50), explain(r)).toBe(true);
    expect(r.markers.pings).toEqual({ '198.51.100.1': true, '198.51.100.77': false });
    expect(r.markers.ping).toBe(false);
    expect(r.markers.poweroff).toBe(true);
  });

  it('kills a guest that outlives timeoutMs', async () => {
    const r = await runGuest({ netdev: [], append: 'vnet.hold=60', timeoutMs: 1_500 });
    expect(r.timedOut).toBe(true);
    expect(r.markers.poweroff).toBe(false);
    expect(r.durationMs).toBeLessThan(5_000);
  });
});
