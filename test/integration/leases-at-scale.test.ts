/**
 * Leases a guest cannot break.
 *
 * One vnetd (socket only) runs network `big`: a /15 with dhcp-lease-max = 65535, the largest a
 * definition allows, whose lease file holds 65,535 leases with 255-byte client ids as dnsmasq
 * writes them. `vnet leases big`, text and --json, as nobody, lists every one.
 *
 * Another vnetd, on a private system-like bus, runs `mid` (3,000 such leases) and `broken`.
 * D-Bus GetLeasesPage pages through `mid` as nobody; dbus-next encodes a few thousand leases a
 * second, so paging all 65,535 over D-Bus would take a minute here (bench territory). `broken`
 * gets a lease file over the size cap, then a folder, while it is up: status names the problem
 * on that network only, the other networks' status is right, and up/down report success.
 *
 * Lease files are put in place after `vnet up`, by rename: dnsmasq 2.90 spends over a minute
 * of CPU loading 65,535 leases when it starts (its load is quadratic). Two daemons, because a
 * file that gains 65,535 leases at once makes vnetd announce 65,535 LeaseAdded signals, which
 * is not what this test is about.
 */
import { execa } from 'execa';
import { mkdirSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NetworkStatus } from '../../src/daemon/service.js';
import { MAX_FILE_BYTES } from '../../src/dhcp/leases.js';
import type { Lease } from '../../src/model.js';
import { DbusDaemon } from '../support/dbus-daemon.js';
import { cleanupAll, hostAndWan, waitFor } from '../support/netns.js';
import { VNET, Vnetd, vnetEnv } from '../support/vnetd.js';

const BIG = 65535;
const MID = 3000;
const DEST = 'org.vnet.Vnet1';
const MANAGER = '/org/vnet/Vnet1';
const NOBODY = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups'];

const NETS = {
  big: 'bridge = "vnbig0"\naddress = "10.20.0.1/15"\ndhcp-range = ["10.20.0.2", "10.21.255.254"]\ndhcp-lease-max = 65535\n',
  mid: 'bridge = "vnmid0"\naddress = "10.24.0.1/20"\ndhcp-range = ["10.24.0.2", "10.24.15.254"]\ndhcp-lease-max = 4000\n',
  broken: 'bridge = "vnbad0"\naddress = "10.30.0.1/24"\ndhcp-range = ["10.30.0.10", "10.30.0.99"]\n',
};

let bus: DbusDaemon;
/** runs `big` */
let plain: Vnetd;
/** on the bus: runs `mid` and `broken` */
let onBus: Vnetd;
const expires = Math.floor(Date.now() / 1000) + 86_400;

const hex2 = (n: number) => (n & 255).toString(16).padStart(2, '0');
/** 512 hex pairs with colons: a 255-byte client id is a window into it */
const PAIRS = Array.from({ length: 512 }, (_, k) => hex2(k)).join(':');

/** Lease i of `big` (or `mid`): address 10.20.0.2 (10.24.0.2) + i, one in 4096 with a host name. */
function expected(i: number, net: 'big' | 'mid' = 'big'): Lease {
  const host = i + 2;
  const [first, oui] = net === 'big' ? [20, '52:54:00'] : [24, '52:54:01'];
  return {
    expires,
    mac: `${oui}:${hex2(i >> 16)}:${hex2(i >> 8)}:${hex2(i)}`,
    ip: `10.${first + (host >> 16)}.${(host >> 8) & 255}.${host & 255}`,
    hostname: i % 4096 === 0 ? `guest-${i}` : '',
    clientId: PAIRS.slice((i % 256) * 3, (i % 256) * 3 + 255 * 3 - 1),
  };
}

const cursor = (l: Lease) => `${l.ip}/${l.mac}`;

function leaseFile(vnetd: Vnetd, name: string): string {
  return path.join(vnetd.env.VNET_STATE_DIR, 'dnsmasq', `${name}.leases`);
}

/** Replace a lease file by a new one with `count` leases, as dnsmasq writes them. */
function writeLeases(vnetd: Vnetd, net: 'big' | 'mid', count: number): void {
  const lines: string[] = [];
  for (let i = 0; i < count; i++) {
    const l = expected(i, net);
    lines.push(`${l.expires} ${l.mac} ${l.ip} ${l.hostname || '*'} ${l.clientId}\n`);
  }
  const file = leaseFile(vnetd, net);
  writeFileSync(`${file}.new`, lines.join(''));
  renameSync(`${file}.new`, file);
}

/** The CLI in the daemon's namespace, as nobody; output kept in full (the --json list is tens of MB). */
async function vnetAsNobody(vnetd: Vnetd, args: string[]) {
  const r = await execa('ip', ['netns', 'exec', vnetd.ns.name, ...NOBODY, process.execPath, VNET, ...args], {
    env: { ...process.env, ...vnetd.env },
    reject: false,
    stdin: 'ignore',
    maxBuffer: 512 * 1024 * 1024,
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** For failure messages: what vnetd logged besides info lines. */
function warnings(vnetd: Vnetd): string {
  return `vnetd's warnings and errors:\n${vnetd.log
    .split('\n')
    .filter((l) => l && !l.includes('"level":30'))
    .join('\n')
    .slice(-4000)}`;
}

async function busctl(args: string[], opts: { nobody?: boolean } = {}) {
  const argv = [...(opts.nobody ? NOBODY : []), 'busctl', `--address=${bus.address}`, ...args];
  const r = await execa(argv[0]!, argv.slice(1), { reject: false, stdin: 'ignore', maxBuffer: 64 * 1024 * 1024 });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** One GetLeasesPage call, as nobody. */
async function leasesPage(net: string, after: string, limit: number) {
  const r = await busctl(['--json=short', 'call', DEST, MANAGER, 'org.vnet.Vnet1.Manager', 'GetLeasesPage', 'ssu', net, after, String(limit)], { nobody: true });
  if (r.exitCode !== 0) throw new Error(`GetLeasesPage ${net} "${after}" ${limit} failed: ${r.stderr}\n${warnings(onBus)}`);
  const [leases, next] = (JSON.parse(r.stdout) as { data: [[string, string, string, string, number][], string] }).data;
  return { leases, next };
}

async function startWith(names: Array<keyof typeof NETS>, extra: Record<string, string> = {}): Promise<Vnetd> {
  const { host } = await hostAndWan();
  const env = vnetEnv(extra);
  for (const name of names) writeFileSync(path.join(env.VNET_CONFIG_DIR, 'networks', `${name}.toml`), NETS[name]);
  return new Vnetd(host, env).start();
}

beforeAll(async () => {
  bus = await DbusDaemon.start();
  plain = await startWith(['big']);
  onBus = await startWith(['mid', 'broken'], { VNET_DBUS_ADDRESS: bus.address });
  await waitFor('vnetd to own its bus name', async () => (await busctl(['status', DEST])).exitCode === 0);
  for (const [vnetd, name] of [[plain, 'big'], [onBus, 'mid'], [onBus, 'broken']] as const) {
    const r = await vnetd.cli(['up', name]);
    if (r.exitCode !== 0) throw new Error(`vnet up ${name}: ${r.stderr}\n${warnings(vnetd)}`);
  }
  writeLeases(plain, 'big', BIG);
  writeLeases(onBus, 'mid', MID);
}, 120_000);

afterAll(async () => {
  await plain?.stop();
  await onBus?.stop();
  await bus?.stop();
  await cleanupAll();
});

describe('65,535 leases with 255-byte client ids (dhcp-lease-max = 65535 on a /15)', () => {
  it('`vnet leases big` as nobody lists every lease, in address order', async () => {
    const r = await vnetAsNobody(plain, ['leases', 'big']);
    expect(r.exitCode, `${r.stderr}\n${warnings(plain)}`).toBe(0);
    expect(r.stderr).toBe('');
    const rows = r.stdout.trimEnd().split('\n');
    expect(rows[0]).toMatch(/^MAC\s+IP\s+HOSTNAME\s+EXPIRES$/);
    expect(rows).toHaveLength(BIG + 1);
    const iso = new Date(expires * 1000).toISOString();
    for (const i of [0, 1, 4096, 30_000, BIG - 1]) {
      const l = expected(i);
      expect(rows[i + 1]!.split(/\s+/)).toEqual([l.mac, l.ip, l.hostname || '-', iso]);
    }
  }, 300_000);

  it('`vnet leases big --json` as nobody gives all of them, client ids whole', async () => {
    const r = await vnetAsNobody(plain, ['leases', 'big', '--json']);
    expect(r.exitCode, `${r.stderr}\n${warnings(plain)}`).toBe(0);
    const leases = JSON.parse(r.stdout) as Lease[];
    expect(leases).toHaveLength(BIG);
    for (const i of [0, 255, 4096, 50_000, BIG - 1]) expect(leases[i]).toEqual(expected(i));
    expect(new Set(leases.map((l) => l.ip)).size).toBe(BIG);
    expect(leases.every((l) => l.clientId.length === 764)).toBe(true);
  }, 300_000);

  it('`vnet status` counts them', async () => {
    const r = await vnetAsNobody(plain, ['status', '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const big = (JSON.parse(r.stdout) as NetworkStatus[]).find((s) => s.name === 'big');
    expect(big).toMatchObject({ state: 'up', leases: BIG });
    expect(big).not.toHaveProperty('leasesProblem');
  });
});

describe('D-Bus GetLeasesPage', () => {
  it('is introspected with its arguments', async () => {
    const r = await busctl(['introspect', DEST, MANAGER], { nobody: true });
    expect(r.exitCode, r.stderr).toBe(0);
    const rows = r.stdout.split('\n').map((l) => l.trim().split(/\s+/).slice(0, 4).join(' '));
    expect(rows).toContain('.GetLeasesPage method ssu a(sssst)s');
  });

  it('as nobody pages through all 3,000 leases of `mid`, 256 a page, each once, in order, client ids whole', async () => {
    const seen: Lease[] = [];
    let after = '';
    let pages = 0;
    do {
      const page = await leasesPage('mid', after, 0);
      pages += 1;
      expect(page.leases.length).toBeGreaterThan(0);
      for (const [mac, ip, hostname, clientId, exp] of page.leases) seen.push({ mac, ip, hostname, clientId, expires: exp });
      if (page.next !== '') expect(page.next).toBe(cursor(seen.at(-1)!));
      after = page.next;
    } while (after !== '' && pages < 100);
    expect(pages).toBe(Math.ceil(MID / 256));
    expect(seen).toEqual(Array.from({ length: MID }, (_, i) => expected(i, 'mid')));
  }, 120_000);

  it('goes on from any cursor, honours a limit, and GetLeases refuses what it cannot carry, naming GetLeasesPage', async () => {
    const first = await leasesPage('mid', '', 3);
    expect(first.leases.map((l) => l[1])).toEqual([0, 1, 2].map((i) => expected(i, 'mid').ip));
    expect(first.next).toBe(cursor(expected(2, 'mid')));
    const tail: string[] = [];
    let after = cursor(expected(2800, 'mid'));
    while (after !== '') {
      const page = await leasesPage('mid', after, 150);
      expect(page.leases.length).toBeLessThanOrEqual(150);
      tail.push(...page.leases.map((l) => l[1]));
      after = page.next;
    }
    expect(tail).toEqual(Array.from({ length: MID - 2801 }, (_, i) => expected(2801 + i, 'mid').ip));

    const bad = await busctl(['call', DEST, MANAGER, 'org.vnet.Vnet1.Manager', 'GetLeasesPage', 'ssu', 'mid', 'nonsense', '0'], { nobody: true });
    expect(bad.exitCode).not.toBe(0);
    expect(bad.stderr).toContain('`after` = "nonsense" is not a cursor ("IP/MAC", as `next` of a previous page)');

    const all = await busctl(['call', DEST, MANAGER, 'org.vnet.Vnet1.Manager', 'GetLeases', 's', 'mid'], { nobody: true });
    expect(all.exitCode).not.toBe(0);
    expect(all.stderr).toContain(
      'network "mid" has more leases than one GetLeases answer carries (1024); page through them with GetLeasesPage(s name, s after, u limit)',
    );
  }, 120_000);
});

describe('a lease file that cannot be read, on one network', () => {
  it('over the cap: status names the problem on that network only, the others are right, up/down report success', async () => {
    const file = leaseFile(onBus, 'broken');
    rmSync(file, { force: true });
    writeFileSync(file, '');
    truncateSync(file, MAX_FILE_BYTES + 1); // sparse
    const problem = `lease file ${file}: is ${MAX_FILE_BYTES + 1} bytes, over the ${MAX_FILE_BYTES}-byte limit (65535 leases of the longest line dnsmasq writes)`;

    const json = await vnetAsNobody(onBus, ['status', '--json']);
    expect(json.exitCode, `${json.stderr}\n${warnings(onBus)}`).toBe(0);
    expect(json.stderr).toBe('');
    const list = JSON.parse(json.stdout) as NetworkStatus[];
    expect(list.map((s) => s.name)).toEqual(['broken', 'default', 'mid']);
    expect(list.find((s) => s.name === 'broken')).toMatchObject({ state: 'up', leases: 0, leasesProblem: problem });
    expect(list.find((s) => s.name === 'mid')).toMatchObject({ state: 'up', leases: MID });
    expect(list.find((s) => s.name === 'mid')).not.toHaveProperty('leasesProblem');
    expect(list.find((s) => s.name === 'default')).toMatchObject({ state: 'down', leases: 0 });

    const text = await vnetAsNobody(onBus, ['status']);
    expect(text.exitCode).toBe(0);
    expect(text.stdout).toMatch(/^broken\s+vnbad0\s+up\s+10\.30\.0\.0\/24\s+\?\s+-$/m);
    expect(text.stdout).toMatch(new RegExp(`^mid\\s+vnmid0\\s+up\\s+10\\.24\\.0\\.0/20\\s+${MID}\\s+-$`, 'm'));
    expect(text.stdout).toContain(`\nbroken: leases unknown: ${problem}`);

    const leases = await vnetAsNobody(onBus, ['leases', 'broken']);
    expect(leases.exitCode).toBe(1);
    expect(leases.stderr).toBe(`vnet: network "broken": ${problem}`);

    // up and down of another network, and `up` of the broken one itself, report success
    expect(await onBus.cli(['up', 'default'])).toMatchObject({ exitCode: 0, stdout: 'default: up (bridge virbr0, 192.168.122.1/24)' });
    expect(await onBus.cli(['up', 'broken'])).toMatchObject({ exitCode: 0, stdout: 'broken: up (bridge vnbad0, 10.30.0.1/24)' });
    expect(await onBus.cli(['down', 'default'])).toMatchObject({ exitCode: 0, stdout: 'default: down' });

    // D-Bus: Status carries the problem, GetLeasesPage names it
    const status = await busctl(['--json=short', 'call', DEST, MANAGER, 'org.vnet.Vnet1.Manager', 'Status'], { nobody: true });
    const [statusJson] = (JSON.parse(status.stdout) as { data: [string] }).data;
    expect((JSON.parse(statusJson) as NetworkStatus[]).find((s) => s.name === 'broken')?.leasesProblem).toBe(problem);
    const page = await busctl(['call', DEST, MANAGER, 'org.vnet.Vnet1.Manager', 'GetLeasesPage', 'ssu', 'broken', '', '0'], { nobody: true });
    expect(page.exitCode).not.toBe(0);
    expect(page.stderr).toContain(problem);

    // nothing was logged as a failed request (with its stack trace)
    expect(onBus.log).not.toMatch(/request failed|D-Bus call failed/);
  });

  it('a folder at the lease path is named too, and mending the file brings the leases back', async () => {
    const file = leaseFile(onBus, 'broken');
    rmSync(file, { force: true });
    mkdirSync(file);
    const broken = async () => (JSON.parse((await vnetAsNobody(onBus, ['status', '--json'])).stdout) as NetworkStatus[]).find((s) => s.name === 'broken');
    expect(await broken()).toMatchObject({ leases: 0, leasesProblem: `lease file ${file}: is not a regular file` });
    rmSync(file, { recursive: true });
    writeFileSync(file, `${expires} 52:54:00:00:00:07 10.30.0.17 mended *\n`);
    expect(await broken()).toMatchObject({ leases: 1 });
    expect(await broken()).not.toHaveProperty('leasesProblem');
  });
});
