/**
 * vnet's NAT/filter table against the real kernel, in throwaway namespaces:
 *
 *   guest g1 10.77.0.10 ─┐
 *   guest g2 10.77.0.11 ─┤ vbr0 10.77.0.1/24 [host] up0 198.51.100.2 ── wan0 198.51.100.1 [wan]
 *   guest g3 10.78.0.10 ── vbr1 10.78.0.1/24 ┘
 *
 * wan has no route to the guests' subnets, so a reply reaches a guest only if the host
 * masqueraded it. The ruleset is applied by vnet's Nft class running inside `host`
 * (test/support/drivers/nat-nft.mjs over the built dist/).
 * nft text (not JSON) is used only for the test's own foreign tables.
 */
import { execa } from 'execa';
import { chmodSync, existsSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Nft, NftError } from '../../src/firewall/nft.js';
import { firewallPart } from '../../src/firewall/rules.js';
import { rebuild, type Transaction } from '../../src/firewall/table.js';
import { parseDefinition } from '../../src/spec/parse.js';
import type { NetworkSpec } from '../../src/spec/spec.js';
import { cleanupAll, createNetns, hostAndWan, tempDir, trackPid, untrackPid, veth, type Netns } from '../support/netns.js';
import { ROOT } from '../support/vnetd.js';

const driver = path.join(ROOT, 'test/support/drivers/nat-nft.mjs');

const NET0 = parseDefinition('n0', 'test', 'bridge = "vbr0"\naddress = "10.77.0.1/24"\n');
const NET1 = parseDefinition('n1', 'test', 'bridge = "vbr1"\naddress = "10.78.0.1/24"\n');
/** the base chains' dispatch rules, and each NAT network's own */
const BASE_RULES = 11; // forward 2, input 3 (in_bridge, guard4, guard6), postrouting 2 (nat4, nat6), 4 that look up port forwards (prerouting, output)
const RULES_PER_NETWORK = 16;

function tableFor(networks: NetworkSpec[]): Transaction {
  return rebuild(networks.map((n) => firewallPart(n)!));
}

/** Rules in a listing the driver printed (vnet's TableState as JSON). */
function ruleCount(table: unknown): number {
  return ((table as { chains?: Array<[string, { rules: string[] }]> } | null)?.chains ?? []).reduce((n, [, c]) => n + c.rules.length, 0);
}

/** vnet's table with its kernel handles: the same handles mean the table was not re-created. */
async function handles(): Promise<string> {
  return host.run('nft', ['-j', '-a', 'list', 'table', 'inet', 'vnet']);
}
const WAN = '198.51.100.1';

let host: Netns;
let wan: Netns;
let g1: Netns;
let g2: Netns;
let g3: Netns;
let foreignBefore: string;

/** Run the Nft driver inside `host`. */
async function nftDriver(args: string[], input?: unknown) {
  const r = await execa('ip', ['netns', 'exec', host.name, process.execPath, driver, ...args], {
    reject: false,
    ...(input === undefined ? { stdin: 'ignore' as const } : { input: JSON.stringify(input) }),
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

async function apply(networks: NetworkSpec[]): Promise<void> {
  const r = await nftDriver(['apply'], tableFor(networks));
  if (r.exitCode !== 0) throw new Error(`apply failed: ${r.stderr}`);
}

async function listVnet(): Promise<unknown> {
  const r = await nftDriver(['list']);
  if (r.exitCode !== 0) throw new Error(`list failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { table: unknown }).table;
}

async function hasVnet(): Promise<boolean> {
  const r = await nftDriver(['has']);
  if (r.exitCode !== 0) throw new Error(`has failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { has: boolean }).has;
}

/** Feed nft text (for the test's own foreign tables) in a namespace. */
async function nftText(ns: Netns, text: string): Promise<void> {
  await execa('ip', ['netns', 'exec', ns.name, 'nft', '-f', '-'], { input: text });
}

async function foreignTable(): Promise<string> {
  return host.run('nft', ['-j', 'list', 'table', 'inet', 'foreign']);
}

/**
 * One echo request; did a reply come? Expecting none, callers pass waitS 1: between
 * namespaces on one host a reply takes well under a millisecond, and busybox waits whole seconds.
 */
async function ping(from: Netns, to: string, waitS = 2): Promise<boolean> {
  const r = await from.tryRun('busybox', ['ping', '-c', '1', '-W', String(waitS), to]);
  return r.exitCode === 0;
}

async function addGuest(bridge: string, port: string, addr: string, gw: string): Promise<Netns> {
  const g = await createNetns('vg');
  await veth(host, port, g, 'eth0');
  await host.run('ip', ['link', 'set', port, 'master', bridge]);
  await g.run('ip', ['addr', 'add', addr, 'dev', 'eth0']);
  await g.run('ip', ['route', 'add', 'default', 'via', gw]);
  return g;
}

async function addBridge(name: string, addr: string): Promise<void> {
  await host.run('ip', ['link', 'add', name, 'type', 'bridge']);
  await host.run('ip', ['addr', 'add', addr, 'dev', name]);
  await host.run('ip', ['link', 'set', name, 'up']);
}


/** With a route back to the guests in wan, run fn (which may then reach the guests without NAT). */
async function withRouteBack<T>(fn: () => Promise<T>): Promise<T> {
  await wan.run('ip', ['route', 'add', '10.77.0.0/24', 'via', '198.51.100.2']);
  try {
    return await fn();
  } finally {
    await wan.run('ip', ['route', 'del', '10.77.0.0/24', 'via', '198.51.100.2']);
  }
}

beforeAll(async () => {
  // the driver runs vnet's compiled Nft class from dist/, which the global setup built
  if (!existsSync(path.join(ROOT, 'dist/firewall/nft.js'))) throw new Error(`no ${ROOT}/dist/firewall/nft.js: the global setup's make build did not emit it`);

  ({ host, wan } = await hostAndWan());
  await host.run('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  await addBridge('vbr0', '10.77.0.1/24');
  await addBridge('vbr1', '10.78.0.1/24');
  g1 = await addGuest('vbr0', 'g1p', '10.77.0.10/24', '10.77.0.1');
  g2 = await addGuest('vbr0', 'g2p', '10.77.0.11/24', '10.77.0.1');
  g3 = await addGuest('vbr1', 'g3p', '10.78.0.10/24', '10.78.0.1');

  // someone else's table, which vnet must never touch (policy accept: it does not filter our traffic)
  await nftText(
    host,
    `table inet foreign {
       set blocked { type ipv4_addr; elements = { 203.0.113.7 } }
       chain guard { type filter hook forward priority 10; policy accept; ip saddr @blocked drop; }
     }`,
  );
  foreignBefore = await foreignTable();
});

afterAll(async () => {
  await cleanupAll();
});

describe('vnet NAT table in a namespace', () => {
  it('baseline without vnet: no table, guest cannot reach wan (no NAT), wan can reach guest given a route', async () => {
    expect(await hasVnet()).toBe(false);
    expect(await listVnet()).toBeNull();
    expect(await ping(g1, WAN, 1)).toBe(false);
    expect(await withRouteBack(() => ping(wan, '10.77.0.10'))).toBe(true);
  });

  it('with one network: the table exists with 16 rules and a guest reaches wan through masquerade', async () => {
    await apply([NET0]);
    expect(await hasVnet()).toBe(true);
    expect(ruleCount(await listVnet())).toBe(BASE_RULES + RULES_PER_NETWORK);
    expect(await ping(g1, WAN)).toBe(true);
    expect(await foreignTable()).toBe(foreignBefore);
  });

  it('TCP from a guest arrives at wan from the uplink address, on a source port >= 1024', async () => {
    await apply([NET0]);
    const server = execa(
      'ip',
      ['netns', 'exec', wan.name, process.execPath, '-e',
        `require('net').createServer(s => s.end(s.remoteAddress + ' ' + s.remotePort))
           .listen(8080, '${WAN}', () => console.log('ready'))`],
      { reject: false },
    );
    trackPid(server.pid);
    try {
      await new Promise<void>((resolve, reject) => {
        server.stdout?.once('data', () => resolve());
        server.once('exit', () => reject(new Error('wan test server exited')));
      });
      // the guest connects from privileged port 80: masquerade must move it into 1024-65535
      const out = await g1.run(process.execPath, ['-e',
        `const s = require('net').connect({ host: '${WAN}', port: 8080, localPort: 80 });
         let d = ''; s.on('data', c => d += c); s.on('end', () => console.log(d));
         s.on('error', e => { console.error(e.message); process.exit(1); });
         setTimeout(() => { console.error('timeout'); process.exit(1); }, 5000).unref();`]);
      const [addr, port] = out.trim().split(' ');
      expect(addr).toBe('198.51.100.2');
      expect(Number(port)).toBeGreaterThanOrEqual(1024);
    } finally {
      server.kill('SIGKILL');
      untrackPid(server.pid);
      await server;
    }
  });

  it('UDP from a guest arrives at wan from the uplink address, on a source port >= 1024', async () => {
    await apply([NET0]);
    // the wan side answers each datagram with the address and port it came from
    const server = execa(
      'ip',
      ['netns', 'exec', wan.name, process.execPath, '-e',
        `const s = require('dgram').createSocket('udp4');
         s.on('message', (m, r) => s.send(r.address + ' ' + r.port, r.port, r.address));
         s.bind(8081, '${WAN}', () => console.log('ready'));`],
      { reject: false },
    );
    trackPid(server.pid);
    try {
      await new Promise<void>((resolve, reject) => {
        server.stdout?.once('data', () => resolve());
        server.once('exit', () => reject(new Error('wan test server exited')));
      });
      // the guest sends from privileged port 500 (as IKE does): masquerade must move it into
      // 1024-65535; the answer reaches the guest only back through NAT (wan has no route to it)
      const out = await g1.run(process.execPath, ['-e',
        `const s = require('dgram').createSocket('udp4');
         s.on('message', (m) => { console.log(String(m)); process.exit(0); });
         s.on('error', (e) => { console.error(e.message); process.exit(1); });
         s.bind(500, () => s.send('hello', 8081, '${WAN}'));
         setTimeout(() => { console.error('no answer'); process.exit(1); }, 5000).unref();`]);
      const [addr, port] = out.trim().split(' ');
      expect(addr).toBe('198.51.100.2');
      expect(Number(port)).toBeGreaterThanOrEqual(1024);
      expect(Number(port)).toBeLessThanOrEqual(65535);
    } finally {
      server.kill('SIGKILL');
      untrackPid(server.pid);
      await server;
    }
  });

  it('wan cannot open a connection to a guest, even with a route to its subnet', async () => {
    await apply([NET0]);
    expect(await withRouteBack(() => ping(wan, '10.77.0.10', 1))).toBe(false);
    // while the guest's own outbound traffic still works
    expect(await ping(g1, WAN)).toBe(true);
  });

  it('two guests on the same bridge reach each other (bridged frames cross the forward hook)', async () => {
    expect((await host.run('sysctl', ['-n', 'net.bridge.bridge-nf-call-iptables'])).trim()).toBe('1');
    await apply([NET0]);
    expect(await ping(g1, '10.77.0.11')).toBe(true);
    expect(await ping(g2, '10.77.0.10')).toBe(true);
  });

  it('re-applying the same ruleset replaces the table: same rules, no duplicates', async () => {
    await apply([NET0]);
    const first = await listVnet();
    await apply([NET0]);
    await apply([NET0]);
    const third = await listVnet();
    expect(ruleCount(third)).toBe(BASE_RULES + RULES_PER_NETWORK);
    expect(third).toEqual(first);
    expect(await foreignTable()).toBe(foreignBefore);
  });

  it('a transaction nft rejects changes nothing, and the error carries nft stderr', async () => {
    await apply([NET0]);
    const before = await handles();
    const bad = tableFor([NET0, NET1]);
    bad.nftables.push({ add: { rule: { family: 'inet', table: 'vnet', chain: 'nochain', expr: [{ accept: null }] } } });
    const r = await nftDriver(['apply'], bad);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^NftError: nft rejected the ruleset: .*No such file or directory/s);
    expect(await handles()).toEqual(before); // same handles: the table was not even re-created
    expect(await foreignTable()).toBe(foreignBefore);
  });

  it('two networks: 32 rules, both masquerade, and neither can open connections into the other', async () => {
    await apply([NET0, NET1]);
    expect(ruleCount(await listVnet())).toBe(BASE_RULES + 2 * RULES_PER_NETWORK);
    expect(await ping(g1, WAN)).toBe(true);
    expect(await ping(g3, WAN)).toBe(true);
    expect(await ping(g1, '10.78.0.10', 1)).toBe(false);
    expect(await ping(g3, '10.77.0.10', 1)).toBe(false);
    expect(await ping(g1, '10.77.0.11')).toBe(true);
    expect(await foreignTable()).toBe(foreignBefore);
  });

  it('Docker-style coexistence: a forward chain with policy drop in another table wins over our accepts', async () => {
    // Every base chain on a hook must accept a packet; an accept in `inet vnet` ends only
    // vnet's chain, so another table's drop policy still drops forwarded guest traffic.
    // vnet documents this rather than working around it (no rules written into other tables).
    await apply([NET0]);
    await nftText(host, 'table ip dockerish {\n chain FORWARD { type filter hook forward priority 0; policy drop; }\n}\n');
    try {
      expect(await ping(g1, WAN, 1)).toBe(false);
      expect(await ping(g1, '10.77.0.11', 1)).toBe(false); // bridged guest<->guest frames too (br_netfilter)
      expect(ruleCount(await listVnet())).toBe(BASE_RULES + RULES_PER_NETWORK); // our table is intact, just overruled
      await apply([NET0]); // re-applying changes nothing about it
      expect(await ping(g1, WAN, 1)).toBe(false);
    } finally {
      await host.run('nft', ['delete', 'table', 'ip', 'dockerish']);
    }
    expect(await ping(g1, WAN)).toBe(true);
  });

  it('applying zero networks removes the vnet table and leaves the foreign table byte-for-byte unchanged', async () => {
    await apply([NET0]);
    await apply([]);
    expect(await hasVnet()).toBe(false);
    expect(await listVnet()).toBeNull();
    expect(await ping(g1, WAN, 1)).toBe(false); // no masquerade any more
    await apply([]); // removing an absent table is fine too
    expect(await hasVnet()).toBe(false);
    expect(await foreignTable()).toBe(foreignBefore);
  });
});

describe('Nft applier failures (no kernel: stand-in nft binaries)', () => {
  /** A stand-in "nft" shell script; it never touches nftables. */
  function fakeNft(body: string): string {
    const p = path.join(tempDir('vnet-fake-nft-'), 'nft');
    writeFileSync(p, `#!/bin/sh\n${body}\n`);
    chmodSync(p, 0o755);
    return p;
  }

  it('a missing binary is an NftError naming it, with the cause kept', async () => {
    const err = await new Nft({ binary: '/nonexistent/nft' }).apply(tableFor([])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NftError);
    expect((err as Error).name).toBe('NftError');
    expect((err as Error).message).toMatch(/^\/nonexistent\/nft -j -f \S+ could not run: .*ENOENT/);
    expect((err as Error).cause).toBeDefined();
  });

  it('a refusal carries nft stderr, and the transaction file is gone afterwards', async () => {
    const tmp = tempDir('vnet-nft-tmp-');
    const nft = new Nft({ binary: fakeNft('echo "Error: syntax error near $3" >&2; exit 1'), tmpDir: tmp });
    const err = await nft.apply(tableFor([])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NftError);
    expect((err as Error).message).toMatch(/^nft rejected the ruleset: Error: syntax error near .*\/vnet-nft-\w+\/ruleset\.json$/);
    expect(readdirSync(tmp)).toEqual([]);
  });

  it('a hung nft is stopped at the timeout', async () => {
    const err = await new Nft({ binary: fakeNft('exec sleep 30'), timeoutMs: 300 }).apply(tableFor([])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NftError);
    expect((err as Error).message).toMatch(/timed out/i);
  });

  it('output that is not JSON is refused; an absent table lists as empty, other list errors throw', async () => {
    await expect(new Nft({ binary: fakeNft('echo not json') }).hasTable()).rejects.toThrow(/printed output that is not JSON: not json/);
    const none = await new Nft({ binary: fakeNft('echo \'{"nftables":[{"metainfo":{}},{"table":{"family":"inet","name":"other"}}]}\'') }).list();
    expect(none.exists).toBe(false);
    await expect(new Nft({ binary: fakeNft('echo "Error: Operation not permitted" >&2; exit 1') }).list()).rejects.toThrow(
      /^nft -j list tables inet failed: Error: Operation not permitted$/,
    );
  });
});
