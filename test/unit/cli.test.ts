/**
 * The CLI without a daemon: per-command options (an unknown one is named), how many names each
 * command takes, help, and the one map from what went wrong to the exit code. The client is a
 * fake here; the real one is used by every integration test.
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { VnetError } from '../../src/api/errors.js';
import type { Ctx } from '../../src/cli/commands.js';
import { main, usage } from '../../src/cli/main.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'vnet-cli-'));
mkdirSync(path.join(dir, 'networks'));
writeFileSync(path.join(dir, 'networks', 'lab.toml'), 'bridge = "vnlab0"\naddress = "10.20.0.1/24"\n');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A context whose API answers with `answer` (or throws it), recording calls and output. */
function fake(answer: (method: string, params: unknown) => unknown) {
  const calls: Array<[string, unknown]> = [];
  const out: string[] = [];
  const err: string[] = [];
  const ctx: Ctx = {
    paths: { configDir: dir, stateDir: dir, runtimeDir: dir, qemuConfDir: dir, networksDir: path.join(dir, 'networks'), socket: path.join(dir, 'vnetd.sock') },
    out: async (t) => void out.push(t),
    err: (t) => void err.push(t),
    call: (async (method: string, params?: unknown) => {
      calls.push([method, params ?? {}]);
      const r = answer(method, params);
      if (r instanceof Error) throw r;
      return r;
    }) as Ctx['call'],
    pages: (fn) => fn(ctx.call),
    ensureDaemon: async () => undefined,
  };
  return { ctx, calls, out, err };
}

const status = { name: 'lab', bridge: 'vnlab0', state: 'up', subnet: '10.20.0.0/24', address: '10.20.0.1', addresses: ['10.20.0.1/24'], forward: 'nat', onDemand: true, pinned: true, leases: 0, taps: [], source: 'x' };

describe('options and names, per command', () => {
  it.each([
    [['up', 'lab', '--force'], /`vnet up` has no option --force/],
    [['status', '--forse'], /`vnet status` has no option --forse/],
    [['leases', 'lab', '-x'], /`vnet leases` has no option -x/],
    [['up'], /`vnet up` takes one network name; usage: vnet up NAME/],
    [['up', 'a', 'b'], /`vnet up` takes one network name/],
    [['status', 'a', 'b'], /`vnet status` takes at most one network name/],
    [['check', 'x'], /`vnet check` takes no arguments/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [[], /no command given/],
  ])('vnet %j: exit 2 naming what is wrong, nothing asked of vnetd', async (argv, message) => {
    const f = fake(() => status);
    expect(await main(argv as string[], f.ctx)).toBe(2);
    expect(f.err.join('\n')).toMatch(message);
    expect(f.err.join('\n')).toContain('usage: vnet COMMAND');
    expect(f.calls).toEqual([]);
  });

  it('passes each command\'s own options through', async () => {
    const f = fake((m) => (m === 'down' ? { ...status, state: 'down' } : status));
    expect(await main(['down', 'lab', '--force', '--json'], f.ctx)).toBe(0);
    expect(f.calls).toEqual([['down', { name: 'lab', force: true }]]);
    expect(JSON.parse(f.out[0]!)).toMatchObject({ name: 'lab', state: 'down' });
    expect(await main(['reload'], f.ctx)).toBe(0);
    expect(f.calls.at(-1)).toEqual(['reload', {}]);
  });
});

describe('user networks', () => {
  it('create passes what was given, allow-users split at commas; delete and list --mine', async () => {
    const made = { ...status, name: 'alice:lab', bridge: 'vn-0123456789a', owner: { uid: process.getuid!(), user: 'alice', allowUsers: ['bob'] } };
    const f = fake((m) => (m === 'list' ? [status, made, { ...made, name: 'bob:x', owner: { uid: process.getuid!() + 1, user: 'bob', allowUsers: [] } }] : m === 'delete' ? { deleted: 'lab' } : made));
    expect(await main(['create', 'lab', '--subnet', 'auto', '--forward', 'isolated', '--dhcp', '--ipv6', 'auto', '--allow-users', 'bob, carol,'], f.ctx)).toBe(0);
    expect(f.calls).toEqual([['create', { name: 'lab', subnet: 'auto', forward: 'isolated', dhcp: true, ipv6: 'auto', allowUsers: ['bob', 'carol'] }]]);
    expect(f.out[0]).toBe('alice:lab: created (bridge vn-0123456789a, 10.20.0.1/24, nat); comes up when a VM asks for a tap on vn-0123456789a');
    expect(await main(['create', 'lab2'], f.ctx)).toBe(0);
    expect(f.calls.at(-1)).toEqual(['create', { name: 'lab2' }]);
    expect(await main(['delete', 'lab', '--force'], f.ctx)).toBe(0);
    expect(f.calls.at(-1)).toEqual(['delete', { name: 'lab', force: true }]);
    expect(await main(['list', '--mine', '--json'], f.ctx)).toBe(0);
    expect((JSON.parse(f.out.at(-1)!) as Array<{ name: string }>).map((n) => n.name)).toEqual(['alice:lab']);
    expect(await main(['create', 'lab', '--force'], f.ctx)).toBe(2);
  });
});

describe('exit codes', () => {
  it.each([
    ['EPERM', 3],
    ['EACCES', 3],
    ['ENOENT', 4],
    ['EBUSY', 5],
    ['ENOTLIVE', 5],
    ['ENOTRUNNING', 6],
    ['ETIMEDOUT', 6],
    ['EADDRINUSE', 1],
    ['EIO', 1],
  ] as const)('%s → %d, with vnetd\'s message', async (code, exit) => {
    const f = fake(() => new VnetError(code, `it said ${code}`));
    expect(await main(['up', 'lab'], f.ctx)).toBe(exit);
    expect(f.err).toEqual([`vnet: it said ${code}`]);
  });

  it('an error of no known kind is 1', async () => {
    const f = fake(() => new TypeError('boom'));
    expect(await main(['up', 'lab'], f.ctx)).toBe(1);
  });
});

describe('status without vnetd', () => {
  it('lists the defined networks as down, says why, and exits 6', async () => {
    const f = fake(() => new VnetError('ENOTRUNNING', 'vnetd is not running (no socket at /x)'));
    expect(await main(['status'], f.ctx)).toBe(6);
    expect(f.out[0]).toMatch(/^default\s+virbr0\s+down\s+192\.168\.122\.0\/24/m);
    expect(f.out[0]).toMatch(/^lab\s+vnlab0\s+down\s+10\.20\.0\.0\/24/m);
    expect(f.err).toEqual(['vnet: vnetd is not running (no socket at /x); every network is down']);
    // by its bridge too
    const g = fake(() => new VnetError('ENOTRUNNING', 'vnetd is not running'));
    expect(await main(['status', 'vnlab0', '--json'], g.ctx)).toBe(6);
    expect(JSON.parse(g.out[0]!)).toEqual([expect.objectContaining({ name: 'lab', state: 'down' })]);
  });
});

describe('help', () => {
  it('lists every command and the exit codes', async () => {
    const f = fake(() => status);
    expect(await main(['help'], f.ctx)).toBe(0);
    for (const c of ['status', 'up', 'down', 'reload', 'leases', 'check']) expect(f.out[0]).toMatch(new RegExp(`^  ${c} `, 'm'));
    expect(usage()).toMatch(/exit codes: 0 ok, 1 failed, 2 usage, 3 permission denied, 4 unknown network,\s+5 busy \(or a change that cannot apply live\), 6 vnetd unreachable/);
    expect(await main(['help', 'down'], f.ctx)).toBe(0);
    expect(f.out[1]).toBe('usage: vnet down NAME [--force] [--json]\n  take a network down; --force even with VMs attached (root or group "vnet")');
  });
});

describe('vnet forward', () => {
  const row = { network: 'lab', proto: 'tcp', hostPort: 8080, guest: 'db', address: '10.20.0.5', guestPort: 80, origin: 'runtime', active: true };

  it('add NET tcp|udp HOSTPORT GUEST[:PORT] asks vnetd with typed parameters (the guest port defaults on vnetd\'s side)', async () => {
    const f = fake(() => row);
    expect(await main(['forward', 'add', 'lab', 'tcp', '8080', 'db:80'], f.ctx)).toBe(0);
    expect(await main(['forward', 'add', 'lab', 'udp', '53', '10.20.0.5'], f.ctx)).toBe(0);
    expect(f.calls).toEqual([
      ['addPortForward', { name: 'lab', proto: 'tcp', hostPort: 8080, guest: 'db', guestPort: 80 }],
      ['addPortForward', { name: 'lab', proto: 'udp', hostPort: 53, guest: '10.20.0.5' }],
    ]);
    expect(f.out[0]).toBe('lab: tcp 8080 → db (10.20.0.5):80 (active)');
  });

  it('list [NET] and remove NET tcp|udp HOSTPORT', async () => {
    const f = fake((m) => (m === 'listPortForwards' ? [row, { ...row, proto: 'udp', hostPort: 53, guest: '10.20.0.9', address: '', origin: 'definition', active: false, problem: 'guest 10.20.0.9 is outside' }] : { removed: true }));
    expect(await main(['forward', 'list'], f.ctx)).toBe(0);
    expect(await main(['forward', 'list', 'lab'], f.ctx)).toBe(0);
    expect(await main(['forward', 'remove', 'lab', 'udp', '53'], f.ctx)).toBe(0);
    expect(f.calls).toEqual([
      ['listPortForwards', {}],
      ['listPortForwards', { name: 'lab' }],
      ['removePortForward', { name: 'lab', proto: 'udp', hostPort: 53 }],
    ]);
    expect(f.out[0]).toMatch(/^NETWORK\s+PROTO\s+HOST-PORT\s+GUEST\s+ORIGIN\s+STATE\nlab\s+tcp\s+8080\s+db \(10\.20\.0\.5\):80\s+runtime\s+active\nlab\s+udp\s+53\s+10\.20\.0\.9:80\s+definition\s+not applied\nlab udp 53: guest 10\.20\.0\.9 is outside$/);
    expect(f.out[2]).toBe('lab: udp 53 no longer forwarded');
  });

  it.each([
    [['forward', 'open', 'lab'], /`vnet forward` takes add, list or remove, not "open"/],
    [['forward', 'add', 'lab', 'tcp', '8080'], /`vnet forward add` takes 4 arguments; usage: vnet forward add NET tcp\|udp HOSTPORT GUEST\[:PORT\]/],
    [['forward', 'add', 'lab', 'icmp', '8080', 'db'], /protocol "icmp" is neither tcp nor udp/],
    [['forward', 'add', 'lab', 'tcp', '0', 'db'], /host port "0" is not a port 1..65535/],
    [['forward', 'add', 'lab', 'tcp', '08080', 'db'], /host port "08080" is not a port/],
    [['forward', 'add', 'lab', 'tcp', '8080', 'db:99999'], /port "99999" in "db:99999" is not a port 1..65535/],
    [['forward', 'add', 'lab', 'tcp', '8080', ':80'], /guest ":80" names no guest/],
    [['forward', 'remove', 'lab', 'tcp'], /`vnet forward remove` takes 3 arguments; usage: vnet forward remove NET tcp\|udp HOSTPORT/],
    [['forward', 'list', 'a', 'b'], /`vnet forward list` takes at most one network name/],
    [['forward', 'list', '--all'], /`vnet forward` has no option --all/],
  ])('vnet %j: exit 2 naming what is wrong, nothing asked of vnetd', async (argv, message) => {
    const f = fake(() => row);
    expect(await main(argv as string[], f.ctx)).toBe(2);
    expect(f.err.join('\n')).toMatch(message);
    expect(f.calls).toEqual([]);
  });

  it('a refusal from vnetd keeps its exit code (3: not root nor in group vnet)', async () => {
    const f = fake(() => new VnetError('EPERM', 'uid 1000 may not add a port forward'));
    expect(await main(['forward', 'add', 'lab', 'tcp', '8080', 'db'], f.ctx)).toBe(3);
    expect(f.err).toEqual(['vnet: uid 1000 may not add a port forward']);
  });
});
