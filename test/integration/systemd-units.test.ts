/**
 * The files vnet installs into the host: systemd units (checked by systemd-analyze),
 * socket activation and sd_notify through src/sys/notify.ts with the real
 * systemd-socket-activate, the D-Bus policy on a private dbus-daemon, and the example
 * network definition through vnet's own parser.
 */
import { execa, type ResultPromise } from 'execa';
import { chmod, copyFile, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseDefinition } from '../../src/spec/parse.js';
import { listenFds, sdNotify, sockaddrUn } from '../../src/sys/notify.js';
import { DbusDaemon } from '../support/dbus-daemon.js';
import { cleanupAll, tempDir, trackPid, unixListening, untrackPid, waitFor } from '../support/netns.js';
import { ROOT as REPO } from '../support/vnetd.js';

/** Spawned processes run the compiled modules from dist/, which the global setup built. */
const DIST = path.join(REPO, 'dist');

/** A unix datagram receiver (python3): prints "ready", then each datagram as a JSON string. */
function datagramReceiver(address: string): { proc: ResultPromise; messages: string[]; ready: Promise<void> } {
  const script = String.raw`
import json, socket, sys
a = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('\0' + a[1:] if a.startswith('@') else a)
s.settimeout(30)
print('ready', flush=True)
while True:
    print(json.dumps(s.recv(4096).decode()), flush=True)
`;
  const proc = execa('python3', ['-c', script, address], { stdin: 'ignore', reject: false, buffer: false });
  trackPid(proc.pid);
  const messages: string[] = [];
  const ready = new Promise<void>((resolve, reject) => {
    let buf = '';
    proc.stdout?.on('data', (chunk: Buffer) => {
      buf += chunk.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line === 'ready') resolve();
        else messages.push(JSON.parse(line) as string);
      }
    });
    proc.once('exit', () => reject(new Error('datagram receiver exited early')));
  });
  return { proc, messages, ready };
}

afterAll(async () => {
  await cleanupAll();
});

describe('systemd units', () => {
  /** The units as installed, with ExecStart pointing at an executable stand-in. */
  async function stagedUnits(): Promise<string> {
    const dir = tempDir('vnet-units-');
    const exe = path.join(dir, 'vnetd');
    await writeFile(exe, '#!/bin/sh\nexit 0\n');
    await chmod(exe, 0o755);
    const service = await readFile(path.join(REPO, 'systemd/vnetd.service'), 'utf8');
    expect(service).toContain('ExecStart=/usr/local/bin/vnetd\n');
    await writeFile(path.join(dir, 'vnetd.service'), service.replaceAll('/usr/local/bin/vnetd', exe));
    await copyFile(path.join(REPO, 'systemd/vnetd.socket'), path.join(dir, 'vnetd.socket'));
    return dir;
  }

  it('pass systemd-analyze verify with nothing said about them', async () => {
    const dir = await stagedUnits();
    const r = await execa('systemd-analyze', ['verify', path.join(dir, 'vnetd.service'), path.join(dir, 'vnetd.socket')], {
      reject: false,
    });
    const aboutUs = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => /vnetd/.test(l));
    expect(aboutUs).toEqual([]);
    expect(r.exitCode).toBe(0);
  });

  it('keep the sandbox: systemd-analyze security rates the service at most 5.0', async () => {
    const dir = await stagedUnits();
    const r = await execa('systemd-analyze', ['security', '--offline=yes', '--threshold=50', path.join(dir, 'vnetd.service')], {
      reject: false,
    });
    const level = /Overall exposure level for vnetd\.service: ([0-9.]+)/.exec(r.stdout)?.[1];
    expect(Number(level)).toBeLessThanOrEqual(5.0);
    expect(r.stdout).toMatch(/✓ NoNewPrivileges=/);
  });

  it('say what the brief requires', async () => {
    const service = await readFile(path.join(REPO, 'systemd/vnetd.service'), 'utf8');
    const socket = await readFile(path.join(REPO, 'systemd/vnetd.socket'), 'utf8');
    for (const line of [
      'Type=notify',
      'Requires=vnetd.socket',
      'ProtectSystem=strict',
      'RuntimeDirectoryPreserve=yes',
      'MemoryDenyWriteExecute=no',
      'RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6',
      'CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_SETUID CAP_SETGID CAP_CHOWN CAP_DAC_OVERRIDE CAP_KILL CAP_NET_BIND_SERVICE',
    ])
      expect(service.split('\n')).toContain(line);
    for (const line of ['ListenStream=/run/vnet/vnetd.sock', 'SocketMode=0666', 'DirectoryMode=0755']) expect(socket.split('\n')).toContain(line);
    const tmpfiles = await readFile(path.join(REPO, 'etc/tmpfiles.d/vnet.conf'), 'utf8');
    expect(tmpfiles).toMatch(/^d \/run\/vnet 0755 root root -$/m);
    expect(tmpfiles).toMatch(/^d \/var\/lib\/vnet 0755 root root -$/m);
  });
});

describe('socket activation and sd_notify (src/sys/notify.ts)', () => {
  it('hands the listening socket to vnetd as fd 3, and READY=1 reaches the manager', async () => {
    const dir = tempDir('vnet-sa-');
    const sock = path.join(dir, 'vnetd.sock');
    const notify = path.join(dir, 'notify');
    const receiver = datagramReceiver(notify);
    await receiver.ready;
    const child = `
      import net from 'node:net';
      const { listenFds, sdNotify } = await import(${JSON.stringify(path.join(DIST, 'sys/notify.js'))});
      const fds = listenFds();
      const envAfter = [process.env.LISTEN_FDS, process.env.LISTEN_PID].filter((v) => v !== undefined);
      const server = net.createServer((c) => {
        c.end(JSON.stringify({ fds, envAfter }));
        server.close();
      });
      server.listen({ fd: fds[0] }, () => { sdNotify('READY=1'); });
    `;
    const activator = execa(
      'systemd-socket-activate',
      ['-l', sock, '-E', `NOTIFY_SOCKET=${notify}`, process.execPath, '--input-type=module', '-e', child],
      { stdin: 'ignore', reject: false },
    );
    trackPid(activator.pid);
    await waitFor(`${sock} to listen`, () => unixListening(sock));
    // The first connection starts the child, which accepts it on the inherited fd.
    const reply = await new Promise<string>((resolve, reject) => {
      const c = net.connect(sock);
      let data = '';
      c.on('data', (d) => (data += d.toString()));
      c.on('end', () => resolve(data));
      c.on('error', reject);
    }).catch(async (err: Error) => {
      activator.kill();
      throw new Error(`no reply from the activated child: ${err.message}; its stderr: ${(await activator).stderr}`, { cause: err });
    });
    expect(JSON.parse(reply)).toEqual({ fds: [3], envAfter: [] });
    await waitFor('READY=1 on the notify socket', () => receiver.messages.length > 0);
    expect(receiver.messages).toEqual(['READY=1']);
    const done = await activator;
    expect(done.exitCode).toBe(0);
    receiver.proc.kill();
  });

  it('sends to an abstract NOTIFY_SOCKET (@name)', async () => {
    const name = `@vnet-test-notify-${process.pid}`;
    const receiver = datagramReceiver(name);
    await receiver.ready;
    expect(sdNotify('STATUS=2 networks up', { NOTIFY_SOCKET: name })).toBe(true);
    await waitFor('the status datagram', () => receiver.messages.length > 0);
    expect(receiver.messages).toEqual(['STATUS=2 networks up']);
    receiver.proc.kill();
  });

  it('does nothing without NOTIFY_SOCKET, and fails naming the socket when nobody listens', () => {
    expect(sdNotify('READY=1', {})).toBe(false);
    const missing = path.join(tempDir(), 'nobody-here');
    expect(() => sdNotify('READY=1', { NOTIFY_SOCKET: missing })).toThrow(new RegExp(`${missing}.*No such file`));
    expect(() => sockaddrUn(`/${'x'.repeat(120)}`)).toThrow(/1\.\.107 bytes/);
  });

  it('ignores LISTEN_FDS meant for another process, and clears the variables', () => {
    const env: NodeJS.ProcessEnv = { LISTEN_FDS: '1', LISTEN_PID: String(process.pid + 1), LISTEN_FDNAMES: 'x' };
    expect(listenFds(env)).toEqual([]);
    expect(env).toEqual({});
    expect(listenFds({})).toEqual([]);
  });
});

describe('D-Bus policy (etc/dbus-1/system.d/org.vnet.Vnet1.conf) on a private bus', () => {
  it('lets only root own org.vnet.Vnet1 and lets anyone call Manager methods and read properties, not set them', async () => {
    // test/fixtures/dbus-system-test.conf: the system bus's default policy (deny own, deny
    // method calls), then the repository's etc/dbus-1/system.d, i.e. vnet's file.
    const bus = await DbusDaemon.start();
    const address = bus.address;
    let owner: ResultPromise | undefined;
    try {
      // A stand-in vnetd owning the name as root: one method, one (writable) property.
      owner = execa(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `import dbus from 'dbus-next';
           const { Interface, ACCESS_READWRITE } = dbus.interface;
           class Manager extends Interface {
             constructor() { super('org.vnet.Vnet1.Manager'); this._v = 'orig'; }
             Ping() { return 'pong'; }
             get Version() { return this._v; }
             set Version(v) { this._v = v; }
           }
           Manager.configureMembers({ methods: { Ping: { inSignature: '', outSignature: 's' } },
             properties: { Version: { signature: 's', access: ACCESS_READWRITE } } });
           const b = dbus.sessionBus({ busAddress: ${JSON.stringify(address)} });
           b.export('/org/vnet/Vnet1', new Manager());
           await b.requestName('org.vnet.Vnet1', 0);
           console.log('owned');`,
        ],
        { cwd: REPO, stdin: 'ignore', reject: false, buffer: false },
      );
      trackPid(owner.pid);
      const standIn = owner;
      let standInErr = '';
      standIn.stderr?.on('data', (d: Buffer) => (standInErr += d.toString()));
      await new Promise<void>((resolve, reject) => {
        standIn.stdout?.on('data', (d: Buffer) => d.toString().includes('owned') && resolve());
        standIn.once('exit', () => reject(new Error(`the stand-in vnetd exited: ${standInErr}\ndbus-daemon log:\n${bus.log}`)));
      });

      const asNobody = (cmd: string, args: string[]) =>
        execa('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', cmd, ...args], { reject: false, stdin: 'ignore' });
      const call = (method: string, ...args: string[]) =>
        asNobody('gdbus', ['call', '--address', address, '--dest', 'org.vnet.Vnet1', '--object-path', '/org/vnet/Vnet1', '--method', method, ...args]);

      const ping = await call('org.vnet.Vnet1.Manager.Ping');
      expect(ping.stdout).toBe("('pong',)");
      const get = await call('org.freedesktop.DBus.Properties.Get', 'org.vnet.Vnet1.Manager', 'Version');
      expect(get.stdout).toBe("(<'orig'>,)");
      const set = await call('org.freedesktop.DBus.Properties.Set', 'org.vnet.Vnet1.Manager', 'Version', "<'evil'>");
      expect(set.exitCode).not.toBe(0);
      expect(set.stderr).toMatch(/AccessDenied/);
      const other = await asNobody('gdbus', ['call', '--address', address, '--dest', 'org.vnet.Vnet1', '--object-path', '/org/vnet/Vnet1', '--method', 'org.example.Other.Do']);
      expect(other.stderr).toMatch(/AccessDenied/);
      const own = await asNobody('dbus-send', [
        `--bus=${address}`, '--print-reply', '--dest=org.freedesktop.DBus', '/org/freedesktop/DBus',
        'org.freedesktop.DBus.RequestName', 'string:org.vnet.Vnet1', 'uint32:0',
      ]);
      expect(own.exitCode).not.toBe(0);
      expect(own.stderr).toMatch(/AccessDenied|not allowed to own/);
    } finally {
      if (owner) {
        owner.kill();
        await owner;
        untrackPid(owner.pid);
      }
      await bus.stop();
    }
  });

  it('activation file names the bus name, root and vnetd.service', async () => {
    const text = await readFile(path.join(REPO, 'etc/dbus-1/system-services/org.vnet.Vnet1.service'), 'utf8');
    const keys = Object.fromEntries(
      text.split('\n').filter((l) => /^[A-Za-z]+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    expect(text).toMatch(/^\[D-BUS Service\]$/m);
    expect(keys).toEqual({ Name: 'org.vnet.Vnet1', Exec: '/usr/local/bin/vnetd', User: 'root', SystemdService: 'vnetd.service' });
  });
});

describe('example network definition', () => {
  it('parses with vnet\'s own parser and uses every documented key', async () => {
    const file = path.join(REPO, 'etc/vnet/networks/example.toml.example');
    const text = await readFile(file, 'utf8');
    const def = parseDefinition('example', file, text);
    expect(def).toMatchObject({ bridge: { name: 'vnbr1' }, forward: { mode: 'nat' }, lifecycle: { onDemand: true, idleDown: 60 } });
    expect(def.dhcp.range4).toEqual({ start: '192.168.150.2', end: '192.168.150.254' });
    // Commented-out keys parse too once uncommented.
    const all = parseDefinition('example', file, text.replace(/^# ([a-z-]+ = )/gm, '$1'));
    expect(all).toMatchObject({ access: { allowUsers: ['alice', 'bob'], allowGroups: ['kvm'] }, dns: { domain: 'vm.internal' }, bridge: { mtu: 1500 } });
    for (const key of ['bridge', 'address', 'dhcp-range', 'forward', 'on-demand', 'idle-down', 'standby', 'allow-users', 'allow-groups', 'domain', 'mtu', 'dhcp-lease-max'])
      expect(text).toMatch(new RegExp(`^(# )?${key} = `, 'm'));
  });
});
