/**
 * Crash and restart: vnetd killed with SIGKILL at rest and between the steps
 * of up, down and a tap hand-off, then restarted: the ruleset equals a clean up's, no
 * duplicate rules, no orphan links, one dnsmasq per network, the guest keeps its
 * address and its connectivity. Also: a firewall flush is repaired, dnsmasq deaths are
 * survived, a same-named bridge of the admin's is never adopted.
 */
import { readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { handoff } from '../support/handoff.js';
import { cleanupAll, createNetns, hostAndWan, pidsWithArg, veth, waitFor, type Netns } from '../support/netns.js';
import { ROOT, Vnetd, vnetEnv, type VnetEnv } from '../support/vnetd.js';

const UDHCPC = path.join(ROOT, 'test/support/udhcpc.sh');

let host: Netns;
let guest: Netns;
let env: VnetEnv;
let vnetd: Vnetd;
let cleanRules: string;
let defaultToml: string;

/** vnet's table without handles: what a user compares. */
async function vnetRules(): Promise<string> {
  const r = await host.tryRun('nft', ['-j', 'list', 'table', 'inet', 'vnet']);
  if (r.exitCode !== 0) return '';
  return JSON.stringify(JSON.parse(r.stdout).nftables.slice(1), (k, v) => (k === 'handle' ? undefined : v));
}

async function ruleCount(): Promise<number> {
  const r = await host.tryRun('nft', ['-j', 'list', 'table', 'inet', 'vnet']);
  if (r.exitCode !== 0) return 0;
  return JSON.parse(r.stdout).nftables.filter((o: object) => 'rule' in o).length;
}

async function bridges(): Promise<string[]> {
  return (await host.links()).filter((l) => l.linkinfo?.info_kind === 'bridge').map((l) => l.ifname).sort();
}

/** dnsmasq of `default`, whether a vnetd's child or an orphan (not vnet's own orphan finder: that is under test) */
function dnsmasqs(): number[] {
  const checks = new Set(pidsWithArg('--test')); // a passing `dnsmasq --test` is not a server
  return pidsWithArg(`--conf-file=${path.join(env.VNET_RUNTIME_DIR, 'dnsmasq', 'default.conf')}`).filter((pid) => !checks.has(pid));
}

async function guestPings(): Promise<boolean> {
  const r = await guest.tryRun('busybox', ['ping', '-c', '1', '-W', '2', '198.51.100.1']);
  return r.exitCode === 0;
}

/** A new vnetd; the previous one must have exited or been stopped (stop() of an exited one only forgets its pid). */
async function start(extra: Record<string, string> = {}): Promise<void> {
  await vnetd?.stop();
  vnetd = await new Vnetd(host, { ...env, ...extra }).start();
}

/** The daemon's `nft -j monitor` child has joined a netlink multicast group: it sees ruleset changes from now on. */
function rulesetMonitorListening(): boolean {
  return vnetd.children('nft').some((pid) => {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('monitor')) return false;
      const inodes = new Set<string>();
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) inodes.add(m[1]!);
      }
      // sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
      return readFileSync(`/proc/${pid}/net/netlink`, 'utf8')
        .split('\n')
        .slice(1)
        .some((line) => {
          const f = line.trim().split(/\s+/);
          return f.length >= 10 && inodes.has(f[9]!) && f[3] !== '00000000';
        });
    } catch {
      return false; // it went away while we looked
    }
  });
}

/**
 * Every test starts from the same state, whatever the one before it did or how it failed:
 * no vnetd, no bridge, no vnet table, no dnsmasq, forwarding off, no state file, no lease,
 * no network definition of its own, the guest without an address. Put back by hand (kernel
 * and files), not through vnet: a broken vnetd must not break the next test too.
 */
async function reset(): Promise<void> {
  await vnetd?.stop('SIGKILL');
  for (const pid of dnsmasqs()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  await waitFor('no dnsmasq of ours', () => dnsmasqs().length === 0, 5000);
  await host.tryRun('ip', ['link', 'del', 'virbr0']);
  await host.tryRun('nft', ['delete', 'table', 'inet', 'vnet']);
  await host.run('sysctl', ['-qw', 'net.ipv4.ip_forward=0']);
  await guest.run('ip', ['addr', 'flush', 'dev', 'eth0']);
  for (const dir of [env.VNET_RUNTIME_DIR, env.VNET_STATE_DIR]) rmSync(dir, { recursive: true, force: true });
  rmSync(defaultToml, { force: true });
}

/** `default` up with the guest on virbr0 holding a lease; returns the guest's address. */
async function upWithGuest(): Promise<string> {
  await vnetd.call('up', { name: 'default' });
  await host.run('ip', ['link', 'set', 'vgport', 'master', 'virbr0']);
  const ip = await lease();
  expect(await guestPings()).toBe(true);
  return ip;
}

async function lease(): Promise<string> {
  const dhcp = await guest.run('busybox', ['udhcpc', '-i', 'eth0', '-n', '-q', '-t', '10', '-T', '1', '-s', UDHCPC]);
  return /LEASE (\S+)/.exec(dhcp)![1]!;
}

/** on-demand `default` that goes down as soon as its last tap is gone (idle-down = 0) */
function onDemandAtOnce(): void {
  writeFileSync(defaultToml, 'bridge = "virbr0"\naddress = "192.168.122.1/24"\ndhcp-range = ["192.168.122.2", "192.168.122.254"]\nidle-down = 0\n');
}

async function state(): Promise<{ state: string; pinned: boolean; taps: Array<{ name: string }> }> {
  return (await vnetd.call('status', { name: 'default' })) as { state: string; pinned: boolean; taps: Array<{ name: string }> };
}

/** A request to a vnetd that SIGKILLs itself on the way: whatever it answers, it must die. */
async function killedDuring(request: Promise<unknown>): Promise<void> {
  await request.catch(() => undefined);
  await waitFor('vnetd to die', () => !vnetd.alive());
}

beforeAll(async () => {
  ({ host } = await hostAndWan());
  guest = await createNetns('vg');
  await veth(host, 'vgport', guest, 'eth0');
  env = vnetEnv();
  defaultToml = path.join(env.VNET_CONFIG_DIR, 'networks', 'default.toml');
  // what a clean `up` of default programs, for every test to compare with
  await start();
  await vnetd.call('up', { name: 'default' });
  cleanRules = await vnetRules();
  expect(await ruleCount()).toBe(27); // 11 base dispatch rules (IPv4, IPv6, 4 that look up port forwards), 16 of the network
});

beforeEach(async () => {
  await reset();
});

afterAll(async () => {
  await vnetd?.stop();
  // cleanupAll also kills what outlived a SIGKILLed vnetd (dnsmasq), by our temp dirs
  await cleanupAll();
});

describe('SIGKILL at rest', () => {
  it('the dataplane stays in the kernel while vnetd is dead; a restart adopts it', async () => {
    await start();
    const guestIp = await upWithGuest();
    const oldDnsmasq = dnsmasqs();
    expect(oldDnsmasq).toHaveLength(1);
    await vnetd.stop('SIGKILL');
    // nothing of the network depends on the daemon process
    expect(await guestPings()).toBe(true);
    await start();
    expect(await vnetRules()).toBe(cleanRules);
    expect(await bridges()).toEqual(['virbr0']);
    expect(dnsmasqs()).toHaveLength(1);
    expect(dnsmasqs()).not.toEqual(oldDnsmasq);
    expect(await state()).toMatchObject({ state: 'up', pinned: true });
    // the guest renews and keeps its address
    expect(await lease()).toBe(guestIp);
    expect(await guestPings()).toBe(true);
  });

  // `make bench` runs the long version (50 in a row, timed); here 2 of each kind of stop
  it('4 restarts in a row (SIGTERM and SIGKILL in turn) keep the rule count, one dnsmasq, one bridge', async () => {
    await start();
    await upWithGuest();
    for (let i = 0; i < 4; i++) {
      await vnetd.stop(i % 2 ? 'SIGKILL' : 'SIGTERM');
      await start();
    }
    expect(await ruleCount()).toBe(27); // 11 base dispatch rules (IPv4, IPv6, 4 that look up port forwards), 16 of the network
    expect(await vnetRules()).toBe(cleanRules);
    expect(await bridges()).toEqual(['virbr0']);
    expect(dnsmasqs()).toHaveLength(1);
    expect(await guestPings()).toBe(true);
  });
});

describe('SIGKILL between steps', () => {
  const upPoints = [
    'before:create-bridge',
    'after:create-bridge',
    'after:set-sysctl@net/ipv6/conf/virbr0/disable_ipv6',
    'after:add-address',
    'after:set-link',
    'after:firewall',
    'after:set-sysctl@net/ipv4/ip_forward',
    'after:start-dhcp',
  ];
  const downPoints = ['after:stop-dhcp', 'after:firewall', 'after:set-sysctl@net/ipv4/ip_forward', 'before:delete-bridge', 'after:delete-bridge'];

  it.each(upPoints)('killed at %s during `vnet up`: a restart converges to a clean up, and down leaves nothing', async (point) => {
    await start({ VNET_FAILPOINT: `up:${point}` });
    await killedDuring(vnetd.call('up', { name: 'default' }));
    await start();
    // the network is up (it was asked for) or down, never half made
    expect(await vnetd.call('up', { name: 'default' })).toMatchObject({ state: 'up' });
    expect(await vnetRules()).toBe(cleanRules);
    expect(await bridges()).toEqual(['virbr0']);
    expect(dnsmasqs()).toHaveLength(1);
    expect(await vnetd.call('down', { name: 'default' })).toMatchObject({ state: 'down' });
    expect(await bridges()).toEqual([]);
    expect(await vnetRules()).toBe('');
    expect(dnsmasqs()).toHaveLength(0);
    expect((await host.run('cat', ['/proc/sys/net/ipv4/ip_forward'])).trim(), vnetd.log).toBe('0');
  });

  it.each(downPoints)('killed at %s during `vnet down`: a restart finishes the teardown', async (point) => {
    // armed for `down` only: the `up` before it runs through
    await start({ VNET_FAILPOINT: `down:${point}` });
    await vnetd.call('up', { name: 'default' });
    await killedDuring(vnetd.call('down', { name: 'default' }));
    await start();
    expect((await state()).state).toBe('down');
    expect(await bridges()).toEqual([]);
    expect(await vnetRules()).toBe('');
    expect(dnsmasqs()).toHaveLength(0);
    expect((await host.run('cat', ['/proc/sys/net/ipv4/ip_forward'])).trim(), vnetd.log).toBe('0');
  });

  it.each(['tap:opened', 'tap:prepared'])('killed at %s during a hand-off: no tap survives, the on-demand network idles down', async (point) => {
    onDemandAtOnce();
    await start({ VNET_FAILPOINT: point });
    const h = await handoff('virbr0', { uid: 0, runtimeDir: env.VNET_RUNTIME_DIR });
    expect(h.result).toMatchObject({ exit: 1, nfds: 0 });
    await waitFor('vnetd to die', () => !vnetd.alive());
    expect(await host.taps()).toEqual([]);
    await start();
    await waitFor('idle-down after restart', async () => (await bridges()).length === 0);
    expect(await vnetRules()).toBe('');
    await waitFor('dnsmasq to go', () => dnsmasqs().length === 0);
  });
});

describe('a VM attached through the helper survives a vnetd restart', () => {
  it('the on-demand network stays up while the tap is held, and idles down after it goes', async () => {
    onDemandAtOnce();
    await start();
    const vm = await handoff('virbr0', { uid: 0, hold: true, runtimeDir: env.VNET_RUNTIME_DIR });
    try {
      expect(vm.result).toMatchObject({ exit: 0, nfds: 1 });
      const tap = vm.result.tap!;
      expect(tap).toMatch(/^tap\d+$/);
      await vnetd.stop('SIGKILL');
      await start();
      // idle-down is 0: a restarted vnetd that lost the tap arms its idle timer during
      // reconcile, before it answers, and starts taking the network down on the next turn
      // of its loop (state "stopping" from the first step); 300 ms is many such turns
      await new Promise((r) => setTimeout(r, 300));
      const s = await state();
      expect(s.state).toBe('up');
      expect(s.taps.map((t) => t.name)).toEqual([tap]);
      expect(await bridges()).toEqual(['virbr0']);
    } finally {
      await vm.release();
    }
    await waitFor('idle-down after the VM left', async () => (await bridges()).length === 0);
  });
});

describe('a failure half way through `vnet up`', () => {
  it.each(['up:before:start-dhcp', 'up:after:firewall', 'up:after:add-address'])(
    'failing at %s rolls back what that up made: no bridge, no rules, no dnsmasq, forwarding as it was',
    async (point) => {
      const rulesBefore = await host.nftRuleset();
      await start({ VNET_FAILPOINT: `throw@${point}` });
      const r = await vnetd.cli(['up', 'default']);
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`network "default" could not come up: .*injected failure at ${point}`));
      expect(vnetd.alive()).toBe(true);
      expect(await bridges()).toEqual([]);
      expect(await host.nftRuleset()).toBe(rulesBefore);
      expect(dnsmasqs()).toHaveLength(0);
      expect((await host.run('cat', ['/proc/sys/net/ipv4/ip_forward'])).trim()).toBe('0');
      expect((await state()).state).toBe('down');
    },
  );
});

describe('others changing things under vnet', () => {
  it('`nft flush ruleset` (a firewall reload) is repaired within a few seconds', async () => {
    await start();
    await upWithGuest();
    // the repair rests on vnetd's `nft -j monitor`, started with the up: flush only once it listens
    await waitFor('vnetd’s nft monitor to subscribe', rulesetMonitorListening, 5000);
    await host.run('nft', ['flush', 'ruleset']);
    await waitFor('the table to come back', async () => (await vnetRules()) === cleanRules, 10_000);
    await waitFor('the guest to reach the wan', guestPings, 5000);
  });

  it('dnsmasq killed: restarted, the guest keeps its lease', async () => {
    await start();
    const guestIp = await upWithGuest();
    const [pid] = dnsmasqs();
    process.kill(pid!, 'SIGKILL');
    await waitFor('a new dnsmasq', () => dnsmasqs().length === 1 && dnsmasqs()[0] !== pid);
    expect(await lease()).toBe(guestIp);
  });

  it('/run wiped while vnetd was down: the admin\'s same-named bridge is never adopted or deleted', async () => {
    await start();
    await vnetd.call('up', { name: 'default' });
    await vnetd.call('down', { name: 'default' });
    await vnetd.stop();
    rmSync(env.VNET_RUNTIME_DIR, { recursive: true, force: true });
    await host.run('ip', ['link', 'add', 'virbr0', 'type', 'bridge']);
    await start();
    const r = await vnetd.cli(['up', 'default']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/virbr0 already exists and was not created by vnet/);
    const untouched = async () => {
      expect(await bridges()).toEqual(['virbr0']);
      expect((await state()).state).toBe('down');
      expect(JSON.parse(await host.run('ip', ['-j', '-4', 'addr', 'show', 'dev', 'virbr0']))[0]?.addr_info ?? []).toEqual([]);
      expect((await host.links()).find((l) => l.ifname === 'virbr0')?.flags).not.toContain('UP');
      expect(await vnetRules()).toBe('');
      expect(dnsmasqs()).toEqual([]);
    };
    await untouched();
    await vnetd.stop();
    await start();
    await untouched();
  });
});
