/**
 * Rtnl and watchLinks against the kernel, each in a throwaway namespace. The
 * code runs in drivers (test/support/drivers) started with `ip netns exec`;
 * results are checked with iproute2, as a user would.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { cleanupAll, createNetns, trackPid, untrackPid, type Netns } from '../support/netns.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const DRIVERS = path.join(ROOT, 'test/support/drivers');

type Outcome = { ok: true; value: any } | { ok: false; error: { name: string; errno: string; op: string; object: string; message: string; hasCause: boolean } };

async function rtnl(ns: Netns, calls: unknown[][]): Promise<Outcome[]> {
  return JSON.parse(await ns.run('node', [path.join(DRIVERS, 'rtnl.mjs'), JSON.stringify(calls)]));
}

function ok(o: Outcome | undefined): any {
  if (!o?.ok) throw new Error(`expected success, got ${JSON.stringify(o)}`);
  return o.value;
}

function failed(o: Outcome | undefined) {
  if (!o || o.ok) throw new Error(`expected failure, got ${JSON.stringify(o)}`);
  return o.error;
}

async function ipLink(ns: Netns, name: string): Promise<any | undefined> {
  const r = await ns.tryRun('ip', ['-d', '-j', 'link', 'show', 'dev', name]);
  return r.exitCode === 0 ? JSON.parse(r.stdout)[0] : undefined;
}

beforeAll(async () => {
  // the drivers import dist/, which the global setup built
  expect(existsSync(path.join(ROOT, 'dist/netlink/rtnl.js'))).toBe(true);
});

afterAll(cleanupAll);

describe('Rtnl', () => {
  it('creates a bridge with MTU and MAC, addresses it (v4 and v6), brings it up, lists it and its routes, deletes it', async () => {
    const ns = await createNetns('vnl');
    const [created, added, added6, up, links, addrs, routes] = await rtnl(ns, [
      ['createBridge', 'vbr0', { mtu: 1400, mac: '52:54:00:0a:0b:0c' }],
      ['addAddress', '@vbr0', '10.9.0.1', 24],
      ['addAddress', '@vbr0', 'fd00:9::1', 64],
      ['setUp', '@vbr0', true],
      ['listLinks'],
      ['listAddresses', '@vbr0'],
      ['listRoutes'],
    ]);
    const br = ok(created);
    expect(br).toMatchObject({ name: 'vbr0', kind: 'bridge', up: false, mtu: 1400, mac: '52:54:00:0a:0b:0c' });
    ok(added);
    ok(added6);
    ok(up);

    const shown = await ipLink(ns, 'vbr0');
    expect(shown.linkinfo.info_kind).toBe('bridge');
    expect(shown.flags).toContain('UP');
    expect(shown.mtu).toBe(1400);
    expect(shown.address).toBe('52:54:00:0a:0b:0c');
    const [addr] = JSON.parse(await ns.run('ip', ['-j', '-4', 'addr', 'show', 'dev', 'vbr0']))[0].addr_info;
    expect(addr).toMatchObject({ local: '10.9.0.1', prefixlen: 24, broadcast: '10.9.0.255' });
    // no duplicate address detection: the bridge has no carrier, and a tentative address could not be bound
    const v6 = JSON.parse(await ns.run('ip', ['-j', '-6', 'addr', 'show', 'dev', 'vbr0']))[0].addr_info.find((a: any) => a.local === 'fd00:9::1');
    expect(v6).toMatchObject({ prefixlen: 64, nodad: true });
    expect(v6.tentative).toBeUndefined();

    expect(ok(links).map((l: any) => l.name).sort()).toEqual(['lo', 'vbr0']);
    expect(ok(links).find((l: any) => l.name === 'vbr0')).toMatchObject({ index: br.index, up: true, kind: 'bridge' });
    expect(ok(addrs).filter((a: any) => !a.address.startsWith('fe80:'))).toEqual([
      { family: 4, index: br.index, address: '10.9.0.1', prefix: 24 },
      { family: 6, index: br.index, address: 'fd00:9::1', prefix: 64 },
    ]);
    // unicast routes of the main table, without IPv6 link-local and multicast ones
    expect(ok(routes)).toEqual([
      { family: 4, dst: '10.9.0.0/24', oif: br.index },
      { family: 6, dst: 'fd00:9::/64', oif: br.index },
    ]);

    await ns.run('ip', ['route', 'add', 'default', 'via', '10.9.0.254']);
    await ns.run('ip', ['route', 'add', '172.16.0.0/12', 'dev', 'vbr0', 'table', '100']);
    const [routes2, deleted, after] = await rtnl(ns, [['listRoutes'], ['deleteLink', br.index], ['getLinkByName', 'vbr0']]);
    expect(ok(routes2)).toContainEqual({ family: 4, dst: '0.0.0.0/0', oif: br.index });
    expect(ok(routes2).map((r: any) => r.dst)).not.toContain('172.16.0.0/12'); // only the main table
    ok(deleted);
    expect(ok(after)).toBeNull();
    expect(await ipLink(ns, 'vbr0')).toBeUndefined();
  });

  it('reports EEXIST naming the operation and the bridge, and leaves the existing link alone', async () => {
    const ns = await createNetns('vnl');
    await ns.run('ip', ['link', 'add', 'virbr0', 'type', 'veth', 'peer', 'name', 'virbr0-p']);
    const [r] = await rtnl(ns, [['createBridge', 'virbr0']]);
    expect(failed(r)).toEqual({
      name: 'NetlinkError',
      errno: 'EEXIST',
      op: 'create bridge',
      object: 'virbr0',
      message: 'create bridge virbr0: EEXIST',
      hasCause: true,
    });
    expect((await ipLink(ns, 'virbr0')).linkinfo.info_kind).toBe('veth');
  });

  it('refuses a template or oversized bridge name before asking the kernel', async () => {
    const ns = await createNetns('vnl');
    const [tmpl, long] = await rtnl(ns, [['createBridge', 'br%d'], ['createBridge', 'b'.repeat(16)]]);
    expect(failed(tmpl)).toMatchObject({ errno: 'EINVAL', message: expect.stringContaining('may hold only ASCII letters') });
    expect(failed(long)).toMatchObject({ errno: 'EINVAL', message: expect.stringContaining('at most 15 bytes') });
    expect(JSON.parse(await ns.run('ip', ['-j', 'link', 'show'])).map((l: any) => l.ifname)).toEqual(['lo']);
  });

  it('sets MTU, MAC and master of a link, releases it, removes an address, and names the link on failure', async () => {
    const ns = await createNetns('vnl');
    await ns.run('ip', ['link', 'add', 'vbr1', 'type', 'bridge']);
    await ns.run('ip', ['link', 'add', 've0', 'type', 'veth', 'peer', 'name', 've1']);
    await ns.run('ip', ['addr', 'add', '10.20.0.1/16', 'dev', 've0']);
    const res = await rtnl(ns, [
      ['configureLink', '@ve0', { mtu: 1300 }],
      ['configureLink', '@ve0', { mac: '02:00:00:00:00:42' }],
      ['configureLink', '@ve0', { master: '@vbr1' }],
      ['getLinkByName', 've0'],
      ['delAddress', '@ve0', '10.20.0.1', 16],
      ['listAddresses', '@ve0'],
      ['listAddresses'],
    ]);
    res.slice(0, 3).forEach(ok);
    const bridgeIndex = (await ipLink(ns, 'vbr1')).ifindex;
    expect(ok(res[3])).toMatchObject({ name: 've0', kind: 'veth', mtu: 1300, mac: '02:00:00:00:00:42', master: bridgeIndex });
    const shown = await ipLink(ns, 've0');
    expect(shown).toMatchObject({ master: 'vbr1', mtu: 1300, address: '02:00:00:00:00:42' });
    ok(res[4]);
    expect(ok(res[5]).filter((a: any) => a.family === 4)).toEqual([]);
    expect(ok(res[6]).filter((a: any) => a.family === 4)).toEqual([{ family: 4, index: 1, address: '127.0.0.1', prefix: 8 }]);

    const [release, missing, badMtu] = await rtnl(ns, [
      ['configureLink', '@ve0', { master: 0 }],
      ['deleteLink', 99999],
      ['configureLink', '@ve0', { mtu: 10 }],
    ]);
    ok(release);
    expect((await ipLink(ns, 've0')).master).toBeUndefined();
    expect(failed(missing)).toMatchObject({ errno: 'ENODEV', message: 'delete link ifindex 99999: ENODEV' });
    expect(failed(badMtu)).toMatchObject({ errno: 'EINVAL', message: `set mtu 10 on ifindex ${shown.ifindex}: EINVAL` });
  });

  it('add address refuses a duplicate with EEXIST and a malformed address with EINVAL', async () => {
    const ns = await createNetns('vnl');
    await ns.run('ip', ['link', 'add', 'vbr2', 'type', 'bridge']);
    const [a, dup, bad, point] = await rtnl(ns, [
      ['addAddress', '@vbr2', '192.0.2.1', 24],
      ['addAddress', '@vbr2', '192.0.2.1', 24],
      ['addAddress', '@vbr2', '192.0.2', 24],
      ['addAddress', '@vbr2', '192.0.2.9', 32],
    ]);
    ok(a);
    expect(failed(dup)).toMatchObject({ errno: 'EEXIST', op: 'add address', object: expect.stringMatching(/^192\.0\.2\.1\/24 to ifindex \d+$/) });
    expect(failed(bad)).toMatchObject({ errno: 'EINVAL' });
    ok(point);
    const info = JSON.parse(await ns.run('ip', ['-j', '-4', 'addr', 'show', 'dev', 'vbr2']))[0].addr_info;
    expect(info.map((x: any) => [x.local, x.prefixlen, x.broadcast])).toEqual([
      ['192.0.2.1', 24, '192.0.2.255'],
      ['192.0.2.9', 32, undefined],
    ]);
  });
});

describe('watchLinks', () => {
  let watcher: ChildProcessWithoutNullStreams | undefined;

  afterAll(() => {
    watcher?.stdin.end();
    watcher?.kill('SIGKILL');
    untrackPid(watcher?.pid);
  });

  it('sees a veth pair created by ip, its change of state, and its deletion; bridge-port notices are not deletions', async () => {
    const ns = await createNetns('vnl');
    await ns.run('ip', ['link', 'add', 'vbr3', 'type', 'bridge']);
    watcher = spawn('ip', ['netns', 'exec', ns.name, 'node', path.join(DRIVERS, 'watch.mjs')]);
    trackPid(watcher.pid);
    const lines: string[] = [];
    const waiters: Array<() => void> = [];
    createInterface({ input: watcher.stdout }).on('line', (l) => {
      lines.push(l);
      waiters.splice(0).forEach((w) => w());
    });
    const events = () => lines.filter((l) => l !== 'ready').map((l) => JSON.parse(l));
    const waitFor = async (pred: () => boolean, what: string) => {
      const deadline = Date.now() + 5000;
      while (!pred()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; saw ${lines.join('\n')}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 100);
        });
      }
    };
    await waitFor(() => lines.includes('ready'), 'ready');

    await ns.run('ip', ['link', 'add', 'wa', 'type', 'veth', 'peer', 'name', 'wb']);
    await waitFor(() => ['wa', 'wb'].every((n) => events().some((e) => e.type === 'new' && e.link.name === n)), 'new wa, wb');
    const newWa = events().find((e) => e.type === 'new' && e.link.name === 'wa');
    expect(newWa.link).toMatchObject({ kind: 'veth', up: false });
    expect(newWa.link.index).toBe((await ipLink(ns, 'wa')).ifindex);

    await ns.run('ip', ['link', 'set', 'wa', 'master', 'vbr3', 'up']);
    await waitFor(() => events().some((e) => e.type === 'new' && e.link.name === 'wa' && e.link.up && e.link.master), 'wa up on vbr3');
    await ns.run('ip', ['link', 'set', 'wa', 'nomaster']);
    await waitFor(() => events().some((e) => e.type === 'new' && e.link.name === 'wa' && e.link.up && !e.link.master), 'wa released');

    await ns.run('ip', ['link', 'del', 'wa']);
    await waitFor(() => ['wa', 'wb'].every((n) => events().some((e) => e.type === 'del' && e.link.name === n)), 'del wa, wb');
    // leaving the bridge sends an AF_BRIDGE RTM_DELLINK for the port: it must not look like a deletion
    const dels = events().filter((e) => e.type === 'del').map((e) => e.link.name);
    expect(dels.sort()).toEqual(['wa', 'wb']);
    expect(events().some((e) => e.error)).toBe(false);
  });
});
