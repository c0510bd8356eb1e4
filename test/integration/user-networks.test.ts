/**
 * Networks users create themselves (issue 14), with the real vnetd, kernel, nft, dnsmasq and the
 * C helper. The users are known only through NSS (libnss-extrausers in vnetd's private mount
 * namespace, as in nss-identity.test.ts): alice and bob in group `vnetusers`, which
 * [user-networks] allows; carol outside it; and nobody. Each request comes from its real uid.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { confFilePath, leaseFilePath } from '../../src/dhcp/dnsmasq.js';
import { userAllocationKey } from '../../src/runtime/auto-subnets.js';
import { networkPath } from '../../src/dbus/names.js';
import { DbusDaemon } from '../support/dbus-daemon.js';
import { runGuest } from '../support/guest.js';
import { handoff, type Handoff } from '../support/handoff.js';
import { cleanupAll, createNetns, hostAndWan, tempDir, veth, type Netns } from '../support/netns.js';
import { HELPER, ROOT, VNET, Vnetd, vnetEnv, type VnetEnv } from '../support/vnetd.js';

const UDHCPC = path.join(ROOT, 'test/support/udhcpc.sh');
const WAN = '198.51.100.1';
const GROUP = 4400;
const U = { alice: 4301, bob: 4302, carol: 4303, nobody: 65534 } as const;
type Who = keyof typeof U;

let host: Netns;
let env: VnetEnv;
let vnetd: Vnetd;
let bus: DbusDaemon;
const held: Handoff[] = [];

/** busctl on the test bus as root, or as nobody; never throws. */
async function busctl(who: 'nobody' | undefined, args: string[]) {
  const ids = who === 'nobody' ? ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups'] : [];
  const argv = [...ids, 'busctl', `--address=${bus.address}`, ...args];
  return host.tryRun(argv[0]!, argv.slice(1));
}

/** `vnet ARGS` as `who` (root when undefined), with the group vnetusers for alice and bob. */
async function vnet(who: Who | undefined, args: string[]) {
  const inner =
    who === undefined
      ? [process.execPath, VNET, ...args]
      : ['setpriv', `--reuid=${U[who]}`, `--regid=${U[who]}`, who === 'alice' || who === 'bob' ? `--groups=${GROUP}` : '--clear-groups', process.execPath, VNET, ...args];
  return host.tryRun(inner[0]!, inner.slice(1), { env: { ...process.env, ...env } });
}

async function json<T>(who: Who | undefined, args: string[]): Promise<T> {
  const r = await vnet(who, [...args, '--json']);
  expect(r.exitCode, `vnet ${args.join(' ')} as ${who ?? 'root'}: ${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout) as T;
}

interface Status {
  name: string;
  bridge: string;
  state: string;
  subnet: string;
  address: string;
  forward: string;
  owner?: { uid: number; user: string; allowUsers: string[] };
  taps: Array<{ uid: number }>;
}

/** A guest namespace on `bridge` (a veth port) that took a DHCP lease: its address. */
async function guestOn(bridge: string, port: string): Promise<{ g: Netns; ip: string; mac: string }> {
  const g = await createNetns('vg');
  await veth(host, port, g, 'eth0');
  await host.run('ip', ['link', 'set', port, 'master', bridge]);
  const out = await g.run('busybox', ['udhcpc', '-i', 'eth0', '-n', '-q', '-t', '10', '-T', '1', '-s', UDHCPC]);
  const mac = JSON.parse(await g.run('ip', ['-j', 'link', 'show', 'eth0']))[0].address as string;
  return { g, ip: /LEASE (\S+)/.exec(out)![1]!, mac };
}

const ping = async (from: Netns, to: string) => (await from.tryRun('busybox', ['ping', '-c', '1', '-W', '2', to])).exitCode === 0;
function allocations(): Record<string, string> {
  const file = path.join(env.VNET_STATE_DIR, 'allocations.json');
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')).subnets as Record<string, string>) : {};
}
/** The user networks vnetd keeps on disk, as "UID:NAME". */
const stored = () => (JSON.parse(readFileSync(path.join(env.VNET_STATE_DIR, 'user-networks', 'networks.json'), 'utf8')).networks as Array<{ uid: number; name: string }>).map((r) => `${r.uid}:${r.name}`).sort();
const userKeys = () => Object.keys(allocations()).filter((k) => k.startsWith('user:')).sort();
/** The allocator's keys of these users' networks, sorted like userKeys(). */
const keysOf = (...nets: Array<[Who, string]>) => nets.map(([who, name]) => userAllocationKey(U[who], name)).sort();

beforeAll(async () => {
  ({ host } = await hostAndWan());
  bus = await DbusDaemon.start();
  env = vnetEnv({ VNET_DBUS_ADDRESS: bus.address });
  writeFileSync(
    path.join(env.VNET_CONFIG_DIR, 'vnet.toml'),
    '[user-networks]\nallow-groups = ["vnetusers"]\npool = "10.231.0.0/16"\nprefix-length = 24\nforward-modes = ["nat", "isolated"]\nmax-per-user = 2\n',
  );
  const dir = tempDir('vnet-usernet-nss-');
  const extra = path.join(dir, 'extrausers');
  mkdirSync(extra);
  writeFileSync(path.join(extra, 'passwd'), Object.entries(U).filter(([n]) => n !== 'nobody').map(([n, id]) => `${n}:x:${id}:${id}::/nonexistent:/usr/sbin/nologin\n`).join(''));
  writeFileSync(path.join(extra, 'group'), `alice:x:4301:\nbob:x:4302:\ncarol:x:4303:\nvnetusers:x:${GROUP}:alice,bob\n`);
  const conf = readFileSync('/etc/nsswitch.conf', 'utf8').replace(/^passwd:.*$/m, 'passwd: files extrausers').replace(/^group:.*$/m, 'group: files extrausers');
  writeFileSync(path.join(dir, 'nsswitch.conf'), conf);
  const mounts = `mount --bind ${path.join(dir, 'nsswitch.conf')} /etc/nsswitch.conf && mount --bind ${extra} /var/lib/extrausers && exec "$@"`;
  vnetd = await new Vnetd(host, env, ['unshare', '-m', '--propagation', 'private', '--', 'sh', '-c', mounts, 'sh']).start();
}, 60_000);

afterAll(async () => {
  for (const h of held) await h.release().catch(() => undefined);
  await vnetd?.stop();
  await bus?.stop();
  await cleanupAll();
});

describe('user networks', () => {
  let mynet: Status;

  it('only users the policy allows may create', async () => {
    for (const who of ['carol', 'nobody'] as const) {
      const r = await vnet(who, ['create', 'mynet']);
      expect(r.exitCode, r.stderr).toBe(3);
      expect(r.stderr).toMatch(/may not create networks: not in allow-users or allow-groups of \[user-networks\]/);
    }
    expect(userKeys()).toEqual([]);
  });

  it('alice and bob each create "mynet": own subnets from the pool, generated bridges, OWNER:NAME', async () => {
    mynet = await json<Status>('alice', ['create', 'mynet', '--dhcp', '--allow-users', 'bob']);
    expect(mynet).toMatchObject({ name: 'alice:mynet', subnet: '10.231.0.0/24', address: '10.231.0.1', forward: 'nat', state: 'down', owner: { uid: U.alice, user: 'alice', allowUsers: ['bob'] } });
    expect(mynet.bridge).toMatch(/^vn-[0-9a-f]{11}$/);
    const bobs = await json<Status>('bob', ['create', 'mynet', '--dhcp']);
    expect(bobs).toMatchObject({ name: 'bob:mynet', subnet: '10.231.1.0/24', owner: { uid: U.bob, user: 'bob' } });
    expect(bobs.bridge).not.toBe(mynet.bridge);
    // the owner says "mynet"; root sees both by their full names
    expect(await json<Status[]>('alice', ['status', 'mynet'])).toMatchObject([{ name: 'alice:mynet', bridge: mynet.bridge }]);
    const all = (await json<Status[]>(undefined, ['status'])).map((s) => s.name);
    expect(all).toEqual(expect.arrayContaining(['alice:mynet', 'bob:mynet', 'default']));
    expect(await json<Status[]>(undefined, ['status', 'bob:mynet'])).toMatchObject([{ name: 'bob:mynet', owner: { user: 'bob' } }]);
    // `list --mine`: alice's own only; bob (listed by alice) sees hers in `list`
    expect((await json<Status[]>('alice', ['list', '--mine'])).map((s) => s.name)).toEqual(['alice:mynet']);
    expect((await json<Status[]>('bob', ['list'])).map((s) => s.name).sort()).toEqual(['alice:mynet', 'bob:mynet', 'default']);
    expect(userKeys()).toEqual(keysOf(['alice', 'mynet'], ['bob', 'mynet']));
  });

  it('others see nothing: not in status, list or leases, by name or by bridge', async () => {
    for (const who of ['carol', 'nobody'] as const) {
      const names = (await json<Status[]>(who, ['status'])).map((s) => s.name);
      expect(names).toEqual(['default']);
      for (const said of ['alice:mynet', mynet.bridge]) {
        for (const cmd of ['status', 'leases']) {
          const r = await vnet(who, [cmd, said]);
          expect(r.exitCode, `${cmd} ${said} as ${who}`).toBe(4);
          // word for word what a name nobody has gets: nothing tells that it exists
          const none = await vnet(who, [cmd, said.includes(':') ? 'zed:mynet' : 'vn-00000000000']);
          expect(r.stderr.replaceAll(said, 'X')).toBe(none.stderr.replace(/zed:mynet|vn-00000000000/g, 'X'));
        }
      }
      expect((await vnet(who, ['delete', 'alice:mynet'])).exitCode).toBe(4);
    }
    // bob may use alice's network, but not delete it
    const r = await vnet('bob', ['delete', 'alice:mynet']);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toMatch(/only its owner \(alice\) or root may delete/);
  });

  it('taps through the helper: the owner and the users listed; a guest gets a lease and reaches the wan through NAT', async () => {
    for (const who of ['carol', 'nobody'] as const) {
      const no = await handoff(mynet.bridge, { uid: U[who], runtimeDir: env.VNET_RUNTIME_DIR });
      expect(no.result.exit, `${who} got a tap`).toBe(1);
      expect(no.result.stderr).toMatch(/access denied: vn-[0-9a-f]+ is another user's network/);
      expect(no.result.stderr).not.toMatch(/alice|mynet/);
    }
    const h = await handoff(mynet.bridge, { uid: U.alice, groups: [GROUP], runtimeDir: env.VNET_RUNTIME_DIR, hold: true });
    held.push(h);
    expect(h.result, h.result.stderr).toMatchObject({ exit: 0, nfds: 1 });
    const bobTap = await handoff(mynet.bridge, { uid: U.bob, runtimeDir: env.VNET_RUNTIME_DIR });
    expect(bobTap.result, bobTap.result.stderr).toMatchObject({ exit: 0, nfds: 1 });
    const [s] = await json<Status[]>('alice', ['status', 'mynet']);
    expect(s).toMatchObject({ state: 'up', taps: [{ uid: U.alice }] });
    const guest = await guestOn(mynet.bridge, 'gport0');
    expect(guest.ip).toMatch(/^10\.231\.0\.\d+$/);
    expect(await ping(guest.g, WAN)).toBe(true);
    const leases = await json<Array<{ mac: string; ip: string }>>('alice', ['leases', 'mynet']);
    expect(leases).toEqual([expect.objectContaining({ mac: guest.mac, ip: guest.ip })]);
    // what every local user can read names neither alice nor mynet: dnsmasq's command line and files, the picks, the state file
    expect(existsSync(leaseFilePath(env.VNET_STATE_DIR, 'alice:mynet'))).toBe(true);
    const dnsmasq = vnetd.children('dnsmasq').map((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8')).join('\n');
    expect(dnsmasq).toContain(confFilePath(env.VNET_RUNTIME_DIR, 'alice:mynet'));
    const state = readFileSync(path.join(env.VNET_RUNTIME_DIR, 'state.json'), 'utf8');
    expect(state).toContain(mynet.bridge); // the file is there, and about this network
    const visible = [dnsmasq, ...readdirSync(path.join(env.VNET_STATE_DIR, 'dnsmasq')), ...readdirSync(path.join(env.VNET_RUNTIME_DIR, 'dnsmasq')), JSON.stringify(allocations()), state].join('\n');
    expect(visible).not.toMatch(/alice|mynet/);
  });

  it('isolated: guests reach the host, nothing is forwarded', async () => {
    const iso = await json<Status & { addresses: string[] }>('alice', ['create', 'lab', '--forward', 'isolated', '--dhcp', '--ipv6', 'auto']);
    expect(iso).toMatchObject({ name: 'alice:lab', forward: 'isolated', subnet: '10.231.2.0/24' });
    const ula = iso.addresses.find((a) => a.includes(':'))!;
    expect(ula).toMatch(/^fd[0-9a-f]{2}:[0-9a-f:]+::1\/64$/);
    const h = await handoff(iso.bridge, { uid: U.alice, runtimeDir: env.VNET_RUNTIME_DIR, hold: true });
    held.push(h);
    expect(h.result, h.result.stderr).toMatchObject({ exit: 0 });
    const guest = await guestOn(iso.bridge, 'gport1');
    expect(guest.ip).toMatch(/^10\.231\.2\.\d+$/);
    expect(await ping(guest.g, '10.231.2.1')).toBe(true);
    expect(await ping(guest.g, WAN)).toBe(false);
    // --ipv6 auto: the bridge has its unique local /64
    const shown = JSON.parse(await host.run('ip', ['-j', '-6', 'addr', 'show', 'dev', iso.bridge])) as Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>;
    expect(shown[0]!.addr_info.map((x) => `${x.local}/${x.prefixlen}`)).toContain(ula);
  });

  it('the limits refuse what they should, and change nothing', async () => {
    const before = userKeys();
    const cases: Array<[Who, string[], number, RegExp]> = [
      ['alice', ['create', 'third'], 1, /has 2 network\(s\), the most one user may have \(max-per-user = 2/],
      ['bob', ['create', 'far', '--subnet', '192.168.50.0/24'], 3, /subnet 192\.168\.50\.0\/24 is outside the user networks' pool 10\.231\.0\.0\/16/],
      ['bob', ['create', 'wide', '--subnet', '10.231.0.0/16'], 3, /user networks are \/24s/],
      ['bob', ['create', 'routed', '--forward', 'route'], 3, /forward mode "route" is not allowed for user networks \(allowed: nat, isolated/],
      ['bob', ['create', 'taken', '--subnet', '10.231.0.0/24'], 1, /10\.231\.0\.0\/24 overlaps 10\.231\.0\.0\/24, which is in use/],
      ['bob', ['create', 'default'], 1, /names the admin's network "default"/],
      ['bob', ['create', 'mynet'], 1, /you already have a network named "mynet"/],
      ['bob', ['create', 'a:b'], 1, /network name "a:b" must be 1-31/],
      ['bob', ['create', `x${'\u00e9'}\n`], 1, /must be 1-31 ASCII letters/],
      ['bob', ['create', 'ok', '--allow-users', 'nosuchuser'], 1, /allow-users: no user named "nosuchuser"/],
      ['bob', ['create', 'ok', '--ipv6', 'fd00::/64'], 1, /ipv6 must be "auto"/],
    ];
    for (const [who, args, code, msg] of cases) {
      const r = await vnet(who, args);
      expect(r.exitCode, `${args.join(' ')}: ${r.stderr}`).toBe(code);
      expect(r.stderr).toMatch(msg);
    }
    expect(userKeys()).toEqual(before);
  });

  it('racing creates pass max-per-user once; create and delete in a loop leaves nothing behind', async () => {
    const tries = await Promise.all([1, 2, 3, 4, 5].map((i) => vnet('bob', ['create', `race${i}`])));
    expect(tries.filter((r) => r.exitCode === 0)).toHaveLength(1);
    expect(tries.filter((r) => /max-per-user = 2/.test(r.stderr))).toHaveLength(4);
    const won = `race${tries.findIndex((r) => r.exitCode === 0) + 1}`;
    expect(userKeys()).toEqual(keysOf(['alice', 'lab'], ['alice', 'mynet'], ['bob', 'mynet'], ['bob', won]));
    const store = path.join(env.VNET_STATE_DIR, 'user-networks', 'networks.json');
    expect((await vnet('bob', ['delete', won])).exitCode).toBe(0);
    const size = readFileSync(store).length;
    for (let i = 0; i < 5; i++) {
      expect((await vnet('bob', ['create', 'loop', '--ipv6', 'auto'])).exitCode).toBe(0);
      expect((await vnet('bob', ['delete', 'loop'])).exitCode).toBe(0);
    }
    expect(readFileSync(store).length).toBe(size);
    expect(userKeys()).toEqual(keysOf(['alice', 'lab'], ['alice', 'mynet'], ['bob', 'mynet']));
  });

  it('survives a vnetd restart with its owner, its bridge, its tap and its lease', async () => {
    await vnetd.stop();
    await vnetd.start();
    const [s] = await json<Status[]>('alice', ['status', 'mynet']);
    expect(s).toMatchObject({ name: 'alice:mynet', bridge: mynet.bridge, subnet: '10.231.0.0/24', state: 'up', owner: { uid: U.alice, user: 'alice' }, taps: [{ uid: U.alice }] });
    expect((await json<unknown[]>('alice', ['leases', 'mynet'])).length).toBe(1);
    expect((await json<Status[]>('carol', ['status'])).map((x) => x.name)).toEqual(['default']);
  });

  it('vagrant-libvirt with qemu_use_session: a TCG guest run by alice on the bridge through the helper', async () => {
    // what libvirt session runs for <interface type='bridge'><source bridge='vn-…'/> with bridge_helper set
    const run = await runGuest({
      ns: host,
      ids: { uid: U.alice, gid: U.alice, groups: [GROUP] },
      env: { VNET_RUNTIME_DIR: env.VNET_RUNTIME_DIR },
      netdev: ['-netdev', `bridge,id=n0,br=${mynet.bridge},helper=${HELPER}`, '-device', 'virtio-net-pci,netdev=n0,mac=52:54:00:14:14:14'],
      append: 'vnet.hostname=vagrantbox',
      timeoutMs: 180_000,
    });
    expect(run.timedOut, run.console).toBe(false);
    expect(run.markers.lease, run.console).toMatch(/^10\.231\.0\.\d+$/);
    expect(run.markers.router).toBe('10.231.0.1');
    expect(run.markers.pings, run.console).toEqual({ [WAN]: true });
    const leases = await json<Array<{ mac: string; ip: string; hostname: string }>>('alice', ['leases', 'mynet']);
    expect(leases).toContainEqual(expect.objectContaining({ mac: '52:54:00:14:14:14', ip: run.markers.lease, hostname: 'vagrantbox' }));
  }, 240_000);

  it('delete: refused while a VM holds a tap, then removes everything it made', async () => {
    const busy = await vnet('alice', ['delete', 'mynet']);
    expect(busy.exitCode, busy.stderr).toBe(5);
    expect((await json<Status[]>('alice', ['status', 'mynet']))[0]!.state).toBe('up');
    const r = await vnet('alice', ['delete', 'mynet', '--force']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect((await host.links()).map((l) => l.ifname)).not.toContain(mynet.bridge);
    expect(await host.run('nft', ['list', 'table', 'inet', 'vnet'])).not.toContain(mynet.bridge);
    expect(existsSync(leaseFilePath(env.VNET_STATE_DIR, 'alice:mynet'))).toBe(false);
    expect(existsSync(confFilePath(env.VNET_RUNTIME_DIR, 'alice:mynet'))).toBe(false);
    expect(Object.keys(allocations())).not.toContain(userAllocationKey(U.alice, 'mynet'));
    expect(stored()).toEqual(['4301:lab', '4302:mynet']);
    expect((await vnet('alice', ['status', 'mynet'])).exitCode).toBe(4);
    // root deletes anyone's, by OWNER:NAME
    expect((await vnet(undefined, ['delete', 'bob:mynet'])).exitCode).toBe(0);
    expect(userKeys()).toEqual(keysOf(['alice', 'lab']));
    expect(stored()).toEqual(['4301:lab']);
  });

  it('D-Bus: CreateNetwork and DeleteNetwork for the caller; nobody else finds it on the bus', async () => {
    // the bus runs outside vnetd's mount namespace, so it knows none of the directory's users: root
    // creates, nobody looks (the bus's own credentials say who calls)
    const manager = ['org.vnet.Vnet1', '/org/vnet/Vnet1', 'org.vnet.Vnet1.Manager'];
    const made = await busctl(undefined, ['call', ...manager, 'CreateNetwork', 'sssbsas', 'busnet', '', 'isolated', 'true', '', '0']);
    expect(made.exitCode, made.stderr).toBe(0);
    expect(made.stdout.trim()).toBe(`o "${networkPath('root:busnet')}"`);
    expect((await json<Status[]>(undefined, ['status', 'root:busnet']))[0]).toMatchObject({ name: 'root:busnet', forward: 'isolated', owner: { uid: 0 } });
    const refused = await busctl('nobody', ['call', ...manager, 'CreateNetwork', 'sssbsas', 'busnet', '', '', 'false', '', '0']);
    expect(refused.stderr).toMatch(/may not create networks/);
    // not in ListNetworks or Status for anyone on the bus but its owner (and root)
    for (const m of ['ListNetworks', 'Status']) expect((await busctl('nobody', ['call', ...manager, m])).stdout).not.toMatch(/busnet|root_3a/);
    expect((await busctl(undefined, ['call', ...manager, 'ListNetworks'])).stdout).toContain(networkPath('root:busnet'));
    const gone = await busctl('nobody', ['call', ...manager, 'DeleteNetwork', 'sb', 'root:busnet', 'false']);
    expect(gone.stderr).toMatch(/no network or bridge named "root:busnet"/);
    const del = await busctl(undefined, ['call', ...manager, 'DeleteNetwork', 'sb', 'busnet', 'false']);
    expect(del.exitCode, del.stderr).toBe(0);
    expect((await vnet(undefined, ['status', 'root:busnet'])).exitCode).toBe(4);
  });

  it('an admin network that later takes a user network\'s subnet wins; its owner can still delete theirs', async () => {
    writeFileSync(path.join(env.VNET_CONFIG_DIR, 'networks', 'office.toml'), 'bridge = "vnoff0"\naddress = "10.231.2.1/24"\n');
    // while it runs, requests use its running copy, as for any network; root takes it down
    expect((await vnet('alice', ['status', 'lab'])).exitCode).toBe(0);
    const down = await vnet(undefined, ['down', 'alice:lab', '--force']);
    expect(down.exitCode, down.stderr).toBe(0);
    const r = await vnet('alice', ['status', 'lab']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/subnet overlaps 10\.231\.2\.0\/24 of network "office"/);
    // the bare name is the admin's for everyone, once the admin has it
    expect((await json<Status[]>('carol', ['status'])).map((s) => s.name)).toEqual(['default', 'office']);
    const del = await vnet('alice', ['delete', 'lab', '--force']);
    expect(del.exitCode, del.stderr).toBe(0);
    expect(userKeys()).toEqual([]);
    expect(stored()).toEqual([]);
    const up = await vnet(undefined, ['up', 'office']);
    expect(up.exitCode, up.stderr).toBe(0);
    expect((await vnet(undefined, ['down', 'office'])).exitCode).toBe(0);
  });
});
