/**
 * vnet writes nothing outside its own folders, and `ps` shows vnetd as "vnetd".
 *
 * vnetd (and so its dnsmasq) runs in a private mount namespace with empty tmpfs over /run
 * and /var/lib/misc, where dnsmasq puts its pid file (/run/dnsmasq.pid) and lease file
 * (/var/lib/misc/dnsmasq.leases) by default; a network with DHCP serves a guest, and both
 * stay empty. The test namespace's mounts are seen through /proc/PID/root.
 */
import { execa, type ResultPromise } from 'execa';
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from '../../src/api/client.js';
import { cleanupAll, createNetns, hostAndWan, trackPid, untrackPid, veth, waitFor, type Netns } from '../support/netns.js';
import { ROOT, VNET, VNETD, vnetEnv, type VnetEnv } from '../support/vnetd.js';

const UDHCPC = path.join(ROOT, 'test/support/udhcpc.sh');
const NET = 'bridge = "vnfil0"\naddress = "10.62.0.1/24"\ndhcp-range = ["10.62.0.10", "10.62.0.99"]\non-demand = false\n';

let host: Netns;
let guest: Netns;
let env: VnetEnv;
let daemon: ResultPromise;
let log = '';

/** names in `dir` as the process `pid` sees it (in its own mount namespace) */
function seenBy(pid: number, dir: string): string[] {
  return readdirSync(`/proc/${pid}/root${dir}`).sort();
}

async function cli(args: string[]) {
  const r = await execa('ip', ['netns', 'exec', host.name, process.execPath, VNET, ...args], { env: { ...process.env, ...env }, reject: false, stdin: 'ignore' });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

function dnsmasqChildren(): number[] {
  return readdirSync('/proc')
    .filter((f) => /^\d+$/.test(f))
    .map(Number)
    .filter((pid) => {
      try {
        const m = /^\d+ \((.*)\) \S (\d+)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'));
        return m?.[1] === 'dnsmasq' && Number(m[2]) === daemon.pid;
      } catch {
        return false;
      }
    });
}

beforeAll(async () => {
  ({ host } = await hostAndWan());
  guest = await createNetns('vgfil');
  env = vnetEnv();
  writeFileSync(path.join(env.VNET_CONFIG_DIR, 'networks', 'fil.toml'), NET);
  // -n: mount(8) must not record these in /run/mount/utab (that would be a file in the new /run)
  const script = 'set -e; mount -n -t tmpfs vnet-test-run /run; mount -n -t tmpfs vnet-test-misc /var/lib/misc; exec "$@"';
  daemon = execa('ip', ['netns', 'exec', host.name, 'unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', process.execPath, VNETD], {
    env: { ...process.env, ...env },
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
    buffer: false,
  });
  trackPid(daemon.pid);
  daemon.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  daemon.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const sock = path.join(env.VNET_RUNTIME_DIR, 'vnetd.sock');
  await waitFor('vnetd to answer', () => call(sock, 'ping', {}, 1000).then(() => true, () => daemon.exitCode !== null && Promise.reject(new Error(`vnetd exited:\n${log}`))), 15_000);
});

afterAll(async () => {
  if (daemon?.pid && daemon.exitCode === null) {
    await cli(['down', 'fil', '--force']);
    daemon.kill('SIGTERM');
    await daemon;
    untrackPid(daemon.pid);
  }
  await cleanupAll();
});

describe('files outside vnet\'s folders', () => {
  it('the mount namespace is in place: vnetd (exec\'d by the wrapper) sees the empty tmpfs over /run and /var/lib/misc', () => {
    expect(seenBy(daemon.pid!, '/run')).toEqual([]);
    expect(seenBy(daemon.pid!, '/var/lib/misc')).toEqual([]);
    expect(readFileSync(`/proc/${daemon.pid}/mountinfo`, 'utf8')).toMatch(/ \/run .* - tmpfs vnet-test-run /);
  });

  it('a network with DHCP serves a guest, and dnsmasq leaves /run and /var/lib/misc empty', async () => {
    const up = await cli(['up', 'fil']);
    expect(up.exitCode, `${up.stderr}\n${log}`).toBe(0);
    const [pid] = dnsmasqChildren();
    expect(pid, log).toBeDefined();
    await veth(host, 'vgfport', guest, 'eth0');
    await host.run('ip', ['link', 'set', 'vgfport', 'master', 'vnfil0']);
    const dhcp = await guest.run('busybox', ['udhcpc', '-i', 'eth0', '-n', '-q', '-t', '10', '-T', '1', '-s', UDHCPC]);
    expect(dhcp).toMatch(/LEASE 10\.62\.0\.\d+/);
    const leases = JSON.parse((await cli(['leases', 'fil', '--json'])).stdout) as unknown[];
    expect(leases).toHaveLength(1);

    // dnsmasq's own view of the same folders (its mount namespace is vnetd's)
    expect(seenBy(pid!, '/run')).toEqual([]);
    expect(seenBy(pid!, '/var/lib/misc')).toEqual([]);
    // what it has open: its lease file, in vnet's state folder, and nothing else on disk
    const files = readdirSync(`/proc/${pid}/fd`)
      .map((fd) => readlinkSync(`/proc/${pid}/fd/${fd}`))
      .filter((t) => t.startsWith('/') && t !== '/dev/null');
    expect(files).toEqual([path.join(env.VNET_STATE_DIR, 'dnsmasq', 'fil.leases')]);
  });

  it('after dnsmasq is killed and restarted, still nothing there', async () => {
    const [pid] = dnsmasqChildren();
    process.kill(pid!, 'SIGKILL');
    await waitFor('a new dnsmasq', () => dnsmasqChildren().some((p) => p !== pid), 10_000);
    const [again] = dnsmasqChildren();
    expect(seenBy(again!, '/run')).toEqual([]);
    expect(seenBy(daemon.pid!, '/run')).toEqual([]);
  });
});

describe('vnetd\'s process name', () => {
  it('ps and top show "vnetd": /proc/PID/comm and /proc/PID/cmdline', async () => {
    expect(readFileSync(`/proc/${daemon.pid}/comm`, 'utf8')).toBe('vnetd\n');
    expect(readFileSync(`/proc/${daemon.pid}/cmdline`, 'utf8').split('\0')[0]).toBe('vnetd');
    const ps = await execa('ps', ['-o', 'comm=,args=', '-p', String(daemon.pid)]);
    expect(ps.stdout.trim().split(/\s+/)).toEqual(['vnetd', 'vnetd']);
  });
});
