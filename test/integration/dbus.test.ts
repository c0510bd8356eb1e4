/**
 * vnetd's D-Bus API, driven by real clients (busctl, gdbus, dbus-next) on a private
 * system-like bus that runs vnet's own policy file. vnetd runs in a "host" namespace;
 * a "guest" namespace on the bridge takes a DHCP lease that GetLeases must report.
 */
import dbus from 'dbus-next';
import { execa, type ResultPromise } from 'execa';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dbusErrorName } from '../../src/api/errors.js';
import { escapePathElement, networkNameOf, networkPath, unescapePathElement } from '../../src/dbus/names.js';
import { DbusDaemon } from '../support/dbus-daemon.js';
import { cleanupAll, createNetns, hostAndWan, trackPid, untrackPid, veth, waitFor, type Netns } from '../support/netns.js';
import { ROOT, Vnetd, vnetEnv } from '../support/vnetd.js';

const DEST = 'org.vnet.Vnet1';
const MANAGER = '/org/vnet/Vnet1';
const DEFAULT = '/org/vnet/Vnet1/Networks/default';
const NOBODY = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups'];

let bus: DbusDaemon;
let host: Netns;
let guest: Netns;
let vnetd: Vnetd;

/** Run a client as root, or as nobody; never throws. */
async function client(cmd: string[], opts: { nobody?: boolean } = {}) {
  const argv = opts.nobody ? [...NOBODY, ...cmd] : cmd;
  const r = await execa(argv[0]!, argv.slice(1), { reject: false, stdin: 'ignore', timeout: 20_000 });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

const busctl = (args: string[], opts: { nobody?: boolean } = {}) => client(['busctl', `--address=${bus.address}`, ...args], opts);
const gdbus = (sub: string, args: string[], opts: { nobody?: boolean } = {}) =>
  client(['gdbus', sub, '--address', bus.address, ...args], opts);

/** busctl --json=short output of a call or get-property: its "data". */
async function busctlJson(args: string[], opts: { nobody?: boolean } = {}): Promise<unknown> {
  const r = await busctl(['--json=short', ...args], opts);
  if (r.exitCode !== 0) throw new Error(`busctl ${args.join(' ')} failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { data: unknown }).data;
}

const state = async () => busctlJson(['get-property', DEST, DEFAULT, 'org.vnet.Vnet1.Network', 'State']);

async function nameOwned(): Promise<boolean> {
  const r = await busctl(['call', 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'NameHasOwner', 's', DEST]);
  return r.stdout.trim() === 'b true';
}

/** waitFor that hands back the first truthy value fn returned. */
async function until<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 10_000): Promise<T> {
  let v: T | undefined | false;
  await waitFor(what, async () => Boolean((v = await fn())), ms);
  return v as T;
}

/**
 * `gdbus monitor` on our name, as nobody: what an unprivileged desktop applet sees. `ready`
 * resolves once it prints "The name org.vnet.Vnet1 is owned by :1.N": gdbus subscribes to the
 * signals before it asks who owns the name, and the bus handles a connection's messages in
 * order, so from then on every signal vnetd emits reaches it. It rejects, with what gdbus
 * printed, if gdbus exits or says the name has no owner first, or after 10 s.
 */
function monitor(): { ready: Promise<void>; lines: () => string; stop: () => Promise<void> } {
  const proc: ResultPromise = execa(NOBODY[0]!, [...NOBODY.slice(1), 'gdbus', 'monitor', '--address', bus.address, '--dest', DEST], {
    reject: false,
    stdin: 'ignore',
    buffer: false,
  });
  trackPid(proc.pid);
  let out = '';
  let settle: ((err?: Error) => void) | undefined;
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => settle?.(new Error('gdbus monitor was not watching within 10 s')), 10_000);
    settle = (err) => {
      settle = undefined;
      clearTimeout(timer);
      if (err) reject(new Error(`${err.message}; it printed:\n${out}`));
      else resolve();
    };
  });
  ready.catch(() => {}); // a caller that never awaits it must not see an unhandled rejection
  const check = () => {
    if (out.includes(`The name ${DEST} is owned by :`)) settle?.();
    else if (out.includes(`The name ${DEST} does not have an owner`)) settle?.(new Error(`gdbus monitor found no owner of ${DEST}`));
  };
  proc.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
    check();
  });
  proc.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
    check();
  });
  // 'close', not 'exit': by then all it printed has been read
  proc.once('close', (code, signal) => settle?.(new Error(`gdbus monitor exited (${code ?? signal}) before watching`)));
  return {
    ready,
    lines: () => out,
    stop: async () => {
      settle?.(new Error('gdbus monitor stopped before watching'));
      if (proc.pid) process.kill(proc.pid, 'SIGTERM');
      await proc;
      untrackPid(proc.pid);
    },
  };
}

async function linkNames(ns: Netns): Promise<string[]> {
  return (await ns.links()).map((l) => l.ifname);
}

describe('object paths and error names (pure)', () => {
  it('escapes network names into path elements that map back one to one', () => {
    expect(escapePathElement('default')).toBe('default');
    expect(escapePathElement('my-net')).toBe('my_2dnet');
    expect(escapePathElement('my_net')).toBe('my_5fnet');
    expect(escapePathElement('0lab')).toBe('0lab');
    expect(networkPath('lab-2')).toBe('/org/vnet/Vnet1/Networks/lab_2d2');
    for (const name of ['default', 'a-', 'a_2d', '_', '-x-', 'Z9_-']) {
      const el = escapePathElement(name);
      expect(el).toMatch(/^[A-Za-z0-9_]+$/);
      expect(unescapePathElement(el)).toBe(name);
    }
    expect(escapePathElement('a-')).not.toBe(escapePathElement('a_2d'));
    expect(networkNameOf('/org/vnet/Vnet1/Networks/my_2dnet')).toBe('my-net');
    expect(networkNameOf('/org/vnet/Vnet1/Networks/bad_zz')).toBeUndefined();
    expect(networkNameOf('/org/vnet/Vnet1/Networks/a/b')).toBeUndefined();
    expect(networkNameOf('/org/vnet/Vnet1')).toBeUndefined();
  });

  it('maps service codes to org.vnet.Vnet1.Error names', () => {
    expect(dbusErrorName('EPERM')).toBe('org.vnet.Vnet1.Error.PermissionDenied');
    expect(dbusErrorName('ENOENT')).toBe('org.vnet.Vnet1.Error.UnknownNetwork');
    expect(dbusErrorName('EBUSY')).toBe('org.vnet.Vnet1.Error.Busy');
    expect(dbusErrorName('ESOMETHINGNEW')).toBe('org.vnet.Vnet1.Error.Failed');
    expect(dbusErrorName('constructor')).toBe('org.vnet.Vnet1.Error.Failed');
  });
});

describe('vnetd on a system-like bus', () => {
  beforeAll(async () => {
    bus = await DbusDaemon.start();
    ({ host } = await hostAndWan());
    guest = await createNetns('vg');
    vnetd = await new Vnetd(host, vnetEnv({ VNET_DBUS_ADDRESS: bus.address })).start();
    await until('vnetd to own org.vnet.Vnet1', nameOwned).catch((err) => {
      throw new Error(`${(err as Error).message}\nvnetd log:\n${vnetd.log}\ndbus-daemon log:\n${bus.log}`);
    });
  });

  afterAll(async () => {
    await vnetd?.stop();
    await bus?.stop();
    await cleanupAll();
  });

  it('the policy lets only root own org.vnet.Vnet1', async () => {
    const r = await busctl(['call', 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'RequestName', 'su', DEST, '4'], {
      nobody: true,
    });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/Access denied|not allowed to own/i);
  });

  it('busctl introspect shows the Manager with its methods and signals', async () => {
    const r = await busctl(['introspect', DEST, MANAGER], { nobody: true });
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    const rows = r.stdout.split('\n').map((l) => l.trim().split(/\s+/).slice(0, 4).join(' '));
    expect(rows).toEqual(
      expect.arrayContaining([
        'org.vnet.Vnet1.Manager interface - -',
        '.ListNetworks method - ao',
        '.GetNetworkByName method s o',
        '.Up method s o',
        '.Down method sb o',
        '.GetLeases method s a(sssst)',
        '.Status method - s',
        '.AddPortForward method ssusu -',
        '.RemovePortForward method ssu -',
        '.ListPortForwards method s a(ssussusb)',
        '.NetworkStateChanged signal sss -',
        '.TapAdded signal ssuu -',
        '.TapRemoved signal ssuu -',
        '.LeaseAdded signal ssss -',
        '.LeaseExpired signal sss -',
      ]),
    );
  });

  it('busctl tree walks from / to the network objects', async () => {
    const r = await busctl(['tree', DEST]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('/org/vnet/Vnet1/Networks/default');
  });

  it('gdbus introspect shows named arguments and the network properties with values', async () => {
    const m = await gdbus('introspect', ['--dest', DEST, '--object-path', MANAGER], { nobody: true });
    expect(m.exitCode).toBe(0);
    expect(m.stdout).toMatch(/Down\(in\s+s name,\s+in\s+b force,\s+out o network\);/);
    expect(m.stdout).toMatch(/NetworkStateChanged\(s network,\s+s state,\s+s reason\);/);
    const n = await gdbus('introspect', ['--dest', DEST, '--object-path', DEFAULT], { nobody: true });
    expect(n.exitCode).toBe(0);
    expect(n.stdout).toContain('interface org.vnet.Vnet1.Network {');
    expect(n.stdout).toContain("readonly s Name = 'default';");
    expect(n.stdout).toContain("readonly s Bridge = 'virbr0';");
    expect(n.stdout).toContain("readonly s State = 'down';");
    expect(n.stdout).toContain("readonly s Subnet = '192.168.122.0/24';");
    expect(n.stdout).toMatch(/EmitsChangedSignal\("true"\)\s+readonly s State/);
  });

  it('ListNetworks and GetNetworkByName answer anyone; unknown names are a named error', async () => {
    expect(await busctlJson(['call', DEST, MANAGER, 'org.vnet.Vnet1.Manager', 'ListNetworks'], { nobody: true })).toEqual([[DEFAULT]]);
    expect(await busctlJson(['call', DEST, MANAGER, 'org.vnet.Vnet1.Manager', 'GetNetworkByName', 's', 'default'])).toEqual([DEFAULT]);
    // by its bridge's name, as people say it
    expect(await busctlJson(['call', DEST, MANAGER, 'org.vnet.Vnet1.Manager', 'GetNetworkByName', 's', 'virbr0'], { nobody: true })).toEqual([DEFAULT]);
    const r = await gdbus('call', ['--dest', DEST, '--object-path', MANAGER, '--method', 'org.vnet.Vnet1.Manager.GetNetworkByName', 'nosuch']);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/org\.vnet\.Vnet1\.Error\.UnknownNetwork: no network or bridge named "nosuch" \(defined: default \(virbr0\);/);
  });

  it('Up as nobody is refused with PermissionDenied naming the uid, and changes nothing', async () => {
    const b = await busctl(['call', DEST, MANAGER, 'org.vnet.Vnet1.Manager', 'Up', 's', 'default'], { nobody: true });
    expect(b.exitCode).not.toBe(0);
    expect(b.stderr).toMatch(/uid 65534 may not bring up network "default"/);
    const g = await gdbus('call', ['--dest', DEST, '--object-path', MANAGER, '--method', 'org.vnet.Vnet1.Manager.Up', 'default'], { nobody: true });
    expect(g.exitCode).not.toBe(0);
    expect(g.stderr).toContain('GDBus.Error:org.vnet.Vnet1.Error.PermissionDenied: uid 65534 may not bring up network "default"');
    expect(await state()).toBe('down');
    expect(await linkNames(host)).not.toContain('virbr0');
  });

  it('Reload is for root or group vnet; it answers what it applied', async () => {
    const no = await busctl(['call', DEST, MANAGER, 'org.vnet.Vnet1.Manager', 'Reload', 's', ''], { nobody: true });
    expect(no.exitCode).not.toBe(0);
    expect(no.stderr).toMatch(/uid 65534 may not reload the network definitions/);
    expect(await busctlJson(['call', DEST, MANAGER, 'org.vnet.Vnet1.Manager', 'Reload', 's', ''])).toEqual([[]]);
    expect(await busctlJson(['call', DEST, MANAGER, 'org.vnet.Vnet1.Manager', 'Reload', 's', 'virbr0'])).toEqual([[['default', []]]]);
  });

  it('properties are read-only', async () => {
    const r = await busctl(['set-property', DEST, DEFAULT, 'org.vnet.Vnet1.Network', 'State', 's', 'up']);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/property State is read-only/);
    expect(await state()).toBe('down');
  });

  it('Up as root brings virbr0 up; State becomes "up" and nobody sees the signals', async () => {
    const mon = monitor();
    try {
      await mon.ready;
      const path = await busctlJson(['call', DEST, MANAGER, 'org.vnet.Vnet1.Manager', 'Up', 's', 'default']);
      expect(path).toEqual([DEFAULT]);
      expect(await state()).toBe('up');
      expect(await busctlJson(['get-property', DEST, DEFAULT, 'org.vnet.Vnet1.Network', 'Pinned'])).toBe(true);
      expect(await linkNames(host)).toContain('virbr0');
      await until('the signals', async () => mon.lines().includes("NetworkStateChanged ('default', 'up', '')")).catch((err) => {
        throw new Error(`${(err as Error).message}; gdbus monitor saw:\n${mon.lines()}`);
      });
      const out = mon.lines();
      expect(out).toContain("/org/vnet/Vnet1: org.vnet.Vnet1.Manager.NetworkStateChanged ('default', 'starting', '')");
      expect(out.indexOf("'starting'")).toBeLessThan(out.indexOf("('default', 'up', '')"));
      expect(out).toMatch(/\/org\/vnet\/Vnet1\/Networks\/default: org\.freedesktop\.DBus\.Properties\.PropertiesChanged \('org\.vnet\.Vnet1\.Network', \{'State': <'up'>/);
    } finally {
      await mon.stop();
    }
  });

  it('a tap handed out over the socket is announced with TapAdded and TapRemoved, with its uid and holder pid', async () => {
    const mon = monitor();
    try {
      await mon.ready;
      // This client takes no fd from the reply, so the kernel drops the tap fd and the tap goes.
      const r = (await vnetd.call('tap', { bridge: 'virbr0' })) as { tap: string };
      expect(r.tap).toMatch(/^tap\d+$/);
      // The pid is the tap's holder as the service records it: the caller, or its parent
      // (QEMU, when the caller is the bridge helper).
      const line = (signal: string) => new RegExp(`org\\.vnet\\.Vnet1\\.Manager\\.${signal} \\('default', '${r.tap}', uint32 0, uint32 (\\d+)\\)`);
      await until('TapRemoved', async () => line('TapRemoved').test(mon.lines())).catch((err) => {
        throw new Error(`${(err as Error).message}; gdbus monitor saw:\n${mon.lines()}`);
      });
      const added = line('TapAdded').exec(mon.lines());
      const removed = line('TapRemoved').exec(mon.lines())!;
      expect(added).not.toBeNull();
      expect(added!.index).toBeLessThan(removed.index);
      expect(added![1]).toBe(removed[1]);
      expect([process.pid, process.ppid]).toContain(Number(added![1]));
      expect(await busctlJson(['get-property', DEST, DEFAULT, 'org.vnet.Vnet1.Network', 'Taps'])).toBe(0);
    } finally {
      await mon.stop();
    }
  });

  it('GetLeases reports the lease a guest took, as a(sssst), and LeaseAdded announced it', async () => {
    const mon = monitor();
    try {
      await mon.ready;
      await veth(host, 'vgport', guest, 'eth0');
      await host.run('ip', ['link', 'set', 'vgport', 'master', 'virbr0']);
      const dhcp = await guest.run('busybox', ['udhcpc', '-i', 'eth0', '-n', '-q', '-t', '10', '-T', '1', '-s', path.join(ROOT, 'test/support/udhcpc.sh')]);
      const ip = /LEASE (\S+)/.exec(dhcp)?.[1];
      expect(ip).toMatch(/^192\.168\.122\.\d+$/);
      const mac = JSON.parse(await guest.run('ip', ['-j', 'link', 'show', 'eth0']))[0].address as string;
      const leases = await until('the lease in GetLeases', async () => {
        const data = (await busctlJson(['call', DEST, MANAGER, 'org.vnet.Vnet1.Manager', 'GetLeases', 's', 'default'], { nobody: true })) as [
          [string, string, string, string, number][],
        ];
        return data[0].length ? data[0] : undefined;
      });
      expect(leases).toHaveLength(1);
      const [lmac, lip, , , expires] = leases[0]!;
      expect(lmac).toBe(mac);
      expect(lip).toBe(ip);
      expect(expires).toBeGreaterThan(Date.now() / 1000);
      expect(await busctlJson(['get-property', DEST, DEFAULT, 'org.vnet.Vnet1.Network', 'Leases'])).toBe(1);
      await until('LeaseAdded', async () => mon.lines().includes(`org.vnet.Vnet1.Manager.LeaseAdded ('default', '${mac}', '${ip}'`)).catch((err) => {
        throw new Error(`${(err as Error).message}; gdbus monitor saw:\n${mon.lines()}`);
      });
    } finally {
      await mon.stop();
    }
  });

  it('Status returns JSON for scripts', async () => {
    const [json] = (await busctlJson(['call', DEST, MANAGER, 'org.vnet.Vnet1.Manager', 'Status'], { nobody: true })) as [string];
    expect(JSON.parse(json)).toEqual([expect.objectContaining({ name: 'default', state: 'up', bridge: 'virbr0', leases: 1, pinned: true })]);
  });

  it('AddPortForward and RemovePortForward are for root or group vnet; ListPortForwards answers anyone', async () => {
    const call = (method: string, sig: string, args: string[], opts: { nobody?: boolean } = {}) => busctl(['call', DEST, MANAGER, 'org.vnet.Vnet1.Manager', method, sig, ...args], opts);
    const no = await call('AddPortForward', 'ssusu', ['default', 'tcp', '2222', '192.168.122.57', '22'], { nobody: true });
    expect(no.exitCode).not.toBe(0);
    expect(no.stderr).toMatch(/uid 65534 may not add a port forward \(tcp 2222 → 192\.168\.122\.57:22\) to network "default"/);
    const bad = await gdbus('call', ['--dest', DEST, '--object-path', MANAGER, '--method', 'org.vnet.Vnet1.Manager.AddPortForward', 'default', 'sctp', '2222', '192.168.122.57', '0']);
    expect(bad.stderr).toContain('org.vnet.Vnet1.Error.InvalidArgument: parameter `proto` must be "tcp" or "udp"');
    const outside = await call('AddPortForward', 'ssusu', ['default', 'udp', '2222', '10.9.9.9', '0']);
    expect(outside.stderr).toMatch(/guest 10\.9\.9\.9 is outside network "default"/);
    expect((await call('AddPortForward', 'ssusu', ['default', 'tcp', '2222', '192.168.122.57', '22'])).exitCode).toBe(0);
    const list = ['call', DEST, MANAGER, 'org.vnet.Vnet1.Manager', 'ListPortForwards', 's', ''];
    expect(await busctlJson(list, { nobody: true })).toEqual([[['default', 'tcp', 2222, '192.168.122.57', '192.168.122.57', 22, 'runtime', true]]]);
    const taken = await call('AddPortForward', 'ssusu', ['default', 'tcp', '2222', '192.168.122.58', '0']);
    expect(taken.stderr).toContain('tcp host port 2222 is taken: network "default" forwards it (tcp 2222 → 192.168.122.57:22, added with `vnet forward add`)');
    expect((await call('RemovePortForward', 'ssu', ['default', 'tcp', '2222'], { nobody: true })).exitCode).not.toBe(0);
    expect((await call('RemovePortForward', 'ssu', ['default', 'tcp', '2222'])).exitCode).toBe(0);
    expect(await busctlJson(list, { nobody: true })).toEqual([[]]);
  });

  it('a dbus-next client lists, reads properties, gets signals and brings the network down', async () => {
    const conn = dbus.sessionBus({ busAddress: bus.address });
    try {
      const obj = await conn.getProxyObject(DEST, MANAGER);
      const manager = obj.getInterface('org.vnet.Vnet1.Manager');
      expect(await manager.ListNetworks!()).toEqual([DEFAULT]);
      const net = await conn.getProxyObject(DEST, DEFAULT);
      const props = net.getInterface('org.freedesktop.DBus.Properties');
      const all = (await props.GetAll!('org.vnet.Vnet1.Network')) as Record<string, { value: unknown }>;
      expect(Object.fromEntries(Object.entries(all).map(([k, v]) => [k, v.value]))).toMatchObject({
        Name: 'default',
        Bridge: 'virbr0',
        State: 'up',
        Subnet: '192.168.122.0/24',
        Address: '192.168.122.1',
        OnDemand: true,
        Pinned: true,
        Leases: 1,
        Taps: 0,
      });

      await expect(manager.GetNetworkByName!('nosuch')).rejects.toMatchObject({
        type: 'org.vnet.Vnet1.Error.UnknownNetwork',
        text: expect.stringMatching(/no network or bridge named "nosuch"/),
      });

      const states: string[] = [];
      const changed: unknown[] = [];
      manager.on('NetworkStateChanged', (name: string, s: string) => states.push(`${name}:${s}`));
      props.on('PropertiesChanged', (iface: string, c: Record<string, { value: unknown }>) => {
        if (iface === 'org.vnet.Vnet1.Network' && c.State) changed.push(c.State.value);
      });
      // No wait for the AddMatch replies: on() writes AddMatch on this connection before Down
      // below, and the bus handles a connection's messages in order.
      expect(await manager.Down!('default', false)).toBe(DEFAULT);
      await until('the down signals', async () => states.includes('default:down') && changed.includes('down'));
      expect(states).toEqual(['default:stopping', 'default:down']);
      expect(changed).toEqual(['stopping', 'down']);
      expect((await props.Get!('org.vnet.Vnet1.Network', 'State')).value).toBe('down');
      expect(await linkNames(host)).not.toContain('virbr0');
    } finally {
      conn.disconnect();
    }
  });

  it('gdbus Down as root on a network that is already down answers with its path; busctl sees State "down"', async () => {
    const r = await gdbus('call', ['--dest', DEST, '--object-path', MANAGER, '--method', 'org.vnet.Vnet1.Manager.Down', 'default', 'false']);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe(`(objectpath '${DEFAULT}',)`);
    expect(await state()).toBe('down');
  });

  it('vnetd gives the name back when it stops, and takes it again when restarted', async () => {
    await vnetd.stop();
    await until('the name to be released', async () => !(await nameOwned()));
    await vnetd.start();
    await until('vnetd to own the name again', nameOwned);
  });

  it('when the bus goes away vnetd keeps serving its socket and still stops promptly', async () => {
    await bus.stop();
    await until('vnetd to notice', async () => vnetd.log.includes('lost: the D-Bus API is off'));
    expect(await vnetd.call('ping')).toMatchObject({ pong: true });
    await vnetd.call('up', { name: 'default' });
    expect(await linkNames(host)).toContain('virbr0');
    await vnetd.call('down', { name: 'default' });
    const t0 = Date.now();
    await vnetd.stop();
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('a bus vnetd cannot reach is logged and the socket still serves', async () => {
    const other = new Vnetd(host, vnetEnv({ VNET_DBUS_ADDRESS: 'unix:path=/nonexistent/vnet-test-bus' }));
    await other.start();
    try {
      expect(await other.call('ping')).toMatchObject({ pong: true });
      // the socket serves first; the bus is tried after it
      await waitFor('the log line', () => /could not connect to bus unix:path=\/nonexistent\/vnet-test-bus/.test(other.log));
      expect(await other.call('ping')).toMatchObject({ pong: true });
    } finally {
      await other.stop();
    }
  });
});
