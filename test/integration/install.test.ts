/**
 * `make install` / `make uninstall` into a DESTDIR (never the real system): the files land
 * with their modes, the units name $(PREFIX) and pass systemd-analyze verify as installed,
 * the installed CLI and daemon run from the installed tree, and uninstall takes away exactly
 * what install put. "As installed" runs use a private mount namespace (unshare -m) in which
 * DESTDIR$(PREFIX) is bind-mounted on $(PREFIX), so the absolute links and unit paths resolve
 * the way they will on a host; nothing of that is visible outside the namespace.
 */
import { execa } from 'execa';
import { existsSync, lstatSync, readdirSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, readlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from '../../src/api/client.js';
import { cleanupAll, createNetns, tempDir, trackPid, untrackPid } from '../support/netns.js';
import { ROOT as REPO, vnetEnv } from '../support/vnetd.js';

const PREFIX = '/usr/local';
/** vnet's firewalld zones and policies (firewalld reads /usr/lib/firewalld and /etc/firewalld only) */
const FIREWALLD_FILES = ['zones/vnet.xml', 'zones/vnet-routed.xml', 'zones/vnet-isolated.xml', 'policies/vnet-out.xml', 'policies/vnet-routed-in.xml'];

/** Environment for make: none of a calling make's flags or variables (`make test PREFIX=...`). */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  for (const k of ['MAKEFLAGS', 'MFLAGS', 'MAKELEVEL', 'MAKEOVERRIDES', 'DESTDIR', 'PREFIX']) delete env[k];
  return env;
}

async function make(target: 'install' | 'uninstall', destdir: string, prefix: string) {
  // When dist/ is built, take it as it is: `make test` builds first, and a rebuild here
  // (rm -rf dist; tsc) would pull dist/ from under other tests running on this tree.
  const asBuilt = existsSync(path.join(REPO, 'dist/.stamp')) ? ['-o', 'dist/.stamp', '-o', 'node_modules/.stamp'] : [];
  const r = await execa('make', ['-C', REPO, ...asBuilt, target, `DESTDIR=${destdir}`, `PREFIX=${prefix}`], {
    env: cleanEnv(),
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
    all: true,
  });
  return { exitCode: r.exitCode ?? -1, all: String(r.all ?? ''), stderr: String(r.stderr ?? '') };
}

/** Every path under root (relative; folders end in "/", symlinks in "@"). */
function snapshot(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(path.join(root, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(path.join(root, r));
      if (st.isDirectory()) {
        out.push(`${r}/`);
        walk(r);
      } else out.push(st.isSymbolicLink() ? `${r}@` : r);
    }
  };
  walk('');
  return out.sort();
}

/** argv that runs `cmd` in a private mount namespace where DESTDIR$(prefix) is mounted on $(prefix). */
function asInstalled(destdir: string, prefix: string, cmd: string[]): string[] {
  const script = [
    'set -e; d="$1"; p="$2"; shift 2',
    // A prefix the host lacks (/opt/x): a tmpfs on its parent, in this namespace only.
    'if [ ! -d "$p" ]; then mount -t tmpfs vnet-install-test "$(dirname "$p")"; mkdir -p "$p"; fi',
    'mount --bind "$d$p" "$p"',
    'exec "$@"',
  ].join('\n');
  return ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', destdir, prefix, ...cmd];
}

async function verifyUnits(destdir: string, prefix: string) {
  const unitdir = `${prefix}/lib/systemd/system`;
  const argv = asInstalled(destdir, prefix, ['systemd-analyze', 'verify', `${unitdir}/vnetd.service`, `${unitdir}/vnetd.socket`]);
  const r = await execa(argv[0]!, argv.slice(1), { reject: false, stdin: 'ignore' });
  return { exitCode: r.exitCode, aboutUs: `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => /vnetd|vnet-install-test|mount/.test(l)) };
}

/** Lines that are not comments (what systemd and dbus act on). */
function activeLines(text: string): string[] {
  return text.split('\n').filter((l) => l.trim() && !/^\s*[#;]/.test(l));
}

afterAll(async () => {
  await cleanupAll();
});

describe('make install / make uninstall, PREFIX=/usr/local, into a DESTDIR', () => {
  let dest: string;
  let before: string[];
  const lib = () => path.join(dest, 'usr/local/lib/vnet');

  beforeAll(async () => {
    dest = tempDir('vnet-destdir-');
    // What a host already has: a folder with a tool of its own (and a mode install must keep),
    // and a network the admin wrote.
    await mkdir(path.join(dest, 'usr/local/bin'), { recursive: true });
    await chmod(path.join(dest, 'usr/local/bin'), 0o750);
    await writeFile(path.join(dest, 'usr/local/bin/other-tool'), '#!/bin/sh\n', { mode: 0o755 });
    await mkdir(path.join(dest, 'etc/vnet/networks'), { recursive: true });
    await writeFile(path.join(dest, 'etc/vnet/networks/lab.toml'), 'bridge = "vnlab"\naddress = "10.77.0.1/24"\n');
    before = snapshot(dest);
    const r = await make('install', dest, PREFIX);
    if (r.exitCode !== 0) throw new Error(`make install failed (${r.exitCode}):\n${r.all}`);
  }, 180_000);

  it('puts each file in place with its mode; the helper is 0755 and not setuid', async () => {
    const expected: Array<[string, number]> = [
      ['usr/local/lib/vnet/bin/vnet', 0o755],
      ['usr/local/lib/vnet/bin/vnetd', 0o755],
      ['usr/local/lib/vnet/package.json', 0o644],
      ['usr/local/lib/vnet/dist/cli/main.js', 0o644],
      ['usr/local/lib/vnet/dist/daemon/main.js', 0o644],
      ['usr/local/libexec/vnet-bridge-helper', 0o755],
      ['usr/local/lib/systemd/system/vnetd.service', 0o644],
      ['usr/local/lib/systemd/system/vnetd.socket', 0o644],
      ['usr/local/lib/tmpfiles.d/vnet.conf', 0o644],
      ['usr/local/lib/sysusers.d/vnet.conf', 0o644],
      ['etc/dbus-1/system.d/org.vnet.Vnet1.conf', 0o644],
      ['usr/local/share/dbus-1/system-services/org.vnet.Vnet1.service', 0o644],
      ['etc/vnet/networks/example.toml.example', 0o644],
      ...FIREWALLD_FILES.map((f): [string, number] => [`etc/firewalld/${f}`, 0o644]),
      ['etc/apparmor.d/local/vnet-dnsmasq', 0o644],
      ['etc/apparmor.d/local/usr.sbin.dnsmasq', 0o644],
    ];
    for (const [rel, mode] of expected) {
      const st = lstatSync(path.join(dest, rel));
      expect({ rel, file: st.isFile(), mode: (st.mode & 0o7777).toString(8), uid: st.uid }).toEqual({ rel, file: true, mode: mode.toString(8), uid: 0 });
    }
    expect(lstatSync(path.join(dest, 'usr/local/libexec/vnet-bridge-helper')).mode & 0o6000).toBe(0);
    for (const name of ['vnet', 'vnetd']) expect(await readlink(path.join(dest, 'usr/local/bin', name))).toBe(`/usr/local/lib/vnet/bin/${name}`);
    // Copied as they are.
    for (const [from, to] of [
      ['etc/tmpfiles.d/vnet.conf', 'usr/local/lib/tmpfiles.d/vnet.conf'],
      ['etc/sysusers.d/vnet.conf', 'usr/local/lib/sysusers.d/vnet.conf'],
      ['etc/dbus-1/system.d/org.vnet.Vnet1.conf', 'etc/dbus-1/system.d/org.vnet.Vnet1.conf'],
      ['etc/vnet/networks/example.toml.example', 'etc/vnet/networks/example.toml.example'],
      ['build/vnet-bridge-helper', 'usr/local/libexec/vnet-bridge-helper'],
      ...FIREWALLD_FILES.map((f) => [`etc/firewalld/${f}`, `etc/firewalld/${f}`] as const),
      ['etc/apparmor.d/local/vnet-dnsmasq', 'etc/apparmor.d/local/vnet-dnsmasq'],
    ] as const)
      expect(await readFile(path.join(dest, to)), to).toEqual(await readFile(path.join(REPO, from)));
    // What was there before is untouched, folder mode included.
    expect(lstatSync(path.join(dest, 'usr/local/bin')).mode & 0o7777).toBe(0o750);
    expect(await readFile(path.join(dest, 'usr/local/bin/other-tool'), 'utf8')).toBe('#!/bin/sh\n');
  });

  it('lists the sysusers.d entry in the manifest; systemd-sysusers makes vnet-dnsmasq from it (user and group, no login)', async () => {
    const manifest = (await readFile(path.join(lib(), 'install-manifest'), 'utf8')).split('\n');
    expect(manifest).toContain('f /usr/local/lib/sysusers.d/vnet.conf');
    expect(manifest).toContain('d /usr/local/lib/sysusers.d');
    // applied to an empty root of its own, never this machine's /etc
    const root = tempDir('vnet-sysusers-root-');
    await mkdir(path.join(root, 'etc'));
    const r = await execa('systemd-sysusers', [`--root=${root}`, path.join(dest, 'usr/local/lib/sysusers.d/vnet.conf')], { reject: false, stdin: 'ignore', all: true });
    expect(r.exitCode, String(r.all)).toBe(0);
    const user = (await readFile(path.join(root, 'etc/passwd'), 'utf8')).split('\n').find((l) => l.startsWith('vnet-dnsmasq:'));
    const [, , uid, gid, , home, shell] = user!.split(':');
    expect({ home, shell }).toEqual({ home: '/nonexistent', shell: '/usr/sbin/nologin' });
    expect(Number(uid)).toBeLessThan(1000); // a system account
    const group = (await readFile(path.join(root, 'etc/group'), 'utf8')).split('\n').find((l) => l.startsWith('vnet-dnsmasq:'));
    expect(group!.split(':')[2]).toBe(gid);
  });

  it('lists the firewalld zones and policies in the manifest; a PREFIX=/usr build puts them in /usr/lib/firewalld', async () => {
    const manifest = (await readFile(path.join(lib(), 'install-manifest'), 'utf8')).split('\n');
    for (const f of FIREWALLD_FILES) expect(manifest).toContain(`f /etc/firewalld/${f}`);
    expect(manifest).toContain('d /etc/firewalld/zones');
    expect(readdirSync(path.join(REPO, 'etc/firewalld/zones')).length + readdirSync(path.join(REPO, 'etc/firewalld/policies')).length).toBe(FIREWALLD_FILES.length);
    // what `make install PREFIX=/usr` would run (-n: nothing is run)
    const dry = await execa('make', ['-n', '-C', REPO, '-o', 'build', 'install', 'PREFIX=/usr', `DESTDIR=${tempDir('vnet-destdir-usr-')}`], { env: cleanEnv(), extendEnv: false, reject: false, stdin: 'ignore' });
    expect(dry.exitCode, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/install -m 0644 etc\/firewalld\/zones\/\*\.xml \S*\/usr\/lib\/firewalld\/zones\//);
    expect(dry.stdout).toMatch(/install -m 0644 etc\/firewalld\/policies\/\*\.xml \S*\/usr\/lib\/firewalld\/policies\//);
    expect(dry.stdout).not.toMatch(/etc\/firewalld\/zones\/$/m);
  });

  it("lists vnet's AppArmor rules for dnsmasq and the hook it made (the host had none) in the manifest; the hook includes the rules", async () => {
    const manifest = (await readFile(path.join(lib(), 'install-manifest'), 'utf8')).split('\n');
    expect(manifest).toContain('f /etc/apparmor.d/local/vnet-dnsmasq');
    expect(manifest).toContain('f /etc/apparmor.d/local/usr.sbin.dnsmasq');
    expect(activeLines(await readFile(path.join(dest, 'etc/apparmor.d/local/usr.sbin.dnsmasq'), 'utf8'))).toEqual(['include if exists <local/vnet-dnsmasq>']);
    // the rules name vnet's folders, each with what dnsmasq does there
    const rules = activeLines(await readFile(path.join(dest, 'etc/apparmor.d/local/vnet-dnsmasq'), 'utf8')).map((l) => l.trim());
    expect(rules).toContain('/{,var/}run/vnet/dnsmasq/*.conf r,');
    expect(rules).toContain('/var/lib/vnet/dnsmasq/*.leases rwk,');
  });

  it('installs production dependencies only, and no source maps or build stamps', () => {
    const modules = readdirSync(path.join(lib(), 'node_modules'));
    for (const dep of ['dbus-next', 'execa', 'ipaddr.js', 'koffi', 'netlink', 'pino', 'smol-toml']) expect(modules).toContain(dep);
    for (const dev of ['vitest', 'typescript', 'fast-check', '@types']) expect(modules).not.toContain(dev);
    const dist = snapshot(path.join(lib(), 'dist'));
    expect(dist.filter((f) => f.endsWith('.map') || f.endsWith('.stamp'))).toEqual([]);
    expect(dist).toContain('daemon/main.js');
  });

  it('units and the D-Bus activation file name $(PREFIX) paths and pass systemd-analyze verify as installed', async () => {
    const service = await readFile(path.join(dest, 'usr/local/lib/systemd/system/vnetd.service'), 'utf8');
    expect(service.split('\n')).toContain('ExecStart=/usr/local/bin/vnetd');
    const dbusService = await readFile(path.join(dest, 'usr/local/share/dbus-1/system-services/org.vnet.Vnet1.service'), 'utf8');
    expect(dbusService.split('\n')).toContain('Exec=/usr/local/bin/vnetd');
    const r = await verifyUnits(dest, PREFIX);
    expect(r.aboutUs).toEqual([]);
    expect(r.exitCode).toBe(0);
  });

  it('the installed vnet runs from the installed tree and checks definitions', async () => {
    const vnet = path.join(lib(), 'bin/vnet');
    const help = await execa(vnet, ['--help'], { reject: false, stdin: 'ignore' });
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toMatch(/^usage: vnet COMMAND/);

    const cfg = tempDir('vnet-install-cfg-');
    await mkdir(path.join(cfg, 'networks'));
    await copyFile(path.join(dest, 'etc/vnet/networks/example.toml.example'), path.join(cfg, 'networks/office.toml'));
    const env = { ...process.env, VNET_CONFIG_DIR: cfg };
    const ok = await execa(vnet, ['check'], { env, reject: false, stdin: 'ignore' });
    expect(ok.stderr).toBe('');
    expect(ok.stdout.split('\n').sort()).toEqual([
      'ok     default (built-in): virbr0 192.168.122.1/24',
      `ok     office (${path.join(cfg, 'networks/office.toml')}): vnbr1 192.168.150.1/24`,
    ]);
    expect(ok.exitCode).toBe(0);

    // The same through the installed link, as /usr/local/bin/vnet.
    const bad = path.join(cfg, 'networks/lab.toml');
    await writeFile(bad, 'bridge = "vnlab"\naddress = "10.0.0.300/24"\n');
    const argv = asInstalled(dest, PREFIX, ['/usr/local/bin/vnet', 'check']);
    const viaLink = await execa(argv[0]!, argv.slice(1), { env, reject: false, stdin: 'ignore' });
    expect(viaLink.exitCode).toBe(1);
    expect(viaLink.stderr).toContain(bad);
    expect(viaLink.stderr).toMatch(/address.*10\.0\.0\.300\/24/);
    expect(viaLink.stdout).toContain('ok     office');
  });

  it('the installed vnetd, started as /usr/local/bin/vnetd in a test namespace, answers vnet status', async () => {
    const ns = await createNetns('vinst');
    const env = vnetEnv();
    const argv = asInstalled(dest, PREFIX, ['/usr/local/bin/vnetd']);
    const daemon = execa('ip', ['netns', 'exec', ns.name, ...argv], {
      env: { ...cleanEnv(), ...env },
      extendEnv: false,
      reject: false,
      stdin: 'ignore',
      all: true,
    });
    trackPid(daemon.pid);
    const socket = path.join(env.VNET_RUNTIME_DIR, 'vnetd.sock');
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (daemon.exitCode !== null && daemon.exitCode !== undefined) throw new Error(`installed vnetd exited:\n${(await daemon).all}`);
      if (existsSync(socket) && (await call(socket, 'ping', {}, 2000).then(() => true, () => false))) break;
      if (Date.now() > deadline) throw new Error(`installed vnetd did not answer on ${socket}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    // It is the installed copy: the native modules it mapped (its command line reads "vnetd").
    expect((await readFile(`/proc/${daemon.pid}/cmdline`, 'utf8')).split('\0')[0]).toBe('vnetd');
    const maps = await readFile(`/proc/${daemon.pid}/maps`, 'utf8');
    expect(maps).toContain('/usr/local/lib/vnet/node_modules/');
    expect(maps).not.toContain(path.join(REPO, 'node_modules'));

    const status = await execa(path.join(lib(), 'bin/vnet'), ['status'], { env: { ...process.env, ...env }, reject: false, stdin: 'ignore' });
    expect(status.stderr).toBe('');
    expect(status.exitCode).toBe(0);
    expect(status.stdout.split('\n')[0]).toMatch(/^NAME\s+BRIDGE\s+STATE\s+SUBNET\s+LEASES\s+TAPS$/);
    expect(status.stdout).toMatch(/^default\s+virbr0\s+down\s+192\.168\.122\.0\/24\s+0\s+-$/m);

    process.kill(daemon.pid!, 'SIGTERM');
    const done = await daemon;
    untrackPid(daemon.pid);
    expect(done.signal ?? done.exitCode).toBe(0);
  });

  it('make uninstall leaves exactly what was there before', async () => {
    const r = await make('uninstall', dest, PREFIX);
    expect(r.exitCode, r.all).toBe(0);
    expect(snapshot(dest)).toEqual(before);
    expect(await readFile(path.join(dest, 'etc/vnet/networks/lab.toml'), 'utf8')).toContain('vnlab');
    expect(lstatSync(path.join(dest, 'usr/local/bin')).mode & 0o7777).toBe(0o750);
  });
});

describe('make install with another PREFIX, twice, then make uninstall', () => {
  const prefix = '/opt/vnet-install-test';

  it('rewrites /usr/local to PREFIX, survives a reinstall, and leaves only the admin\'s network behind', async () => {
    const dest = tempDir('vnet-destdir-opt-');
    // the host's own AppArmor hook for dnsmasq (as Ubuntu's package makes it): install adds one line, once
    const hook = path.join(dest, 'etc/apparmor.d/local/usr.sbin.dnsmasq');
    const admins = '# Site-specific additions and overrides for usr.sbin.dnsmasq.\n  /srv/tftp/** r,\n';
    await mkdir(path.dirname(hook), { recursive: true });
    await writeFile(hook, admins);
    for (const round of [1, 2]) {
      const r = await make('install', dest, prefix);
      expect(r.exitCode, `install round ${round}:\n${r.all}`).toBe(0);
      expect(await readFile(hook, 'utf8'), `round ${round}`).toBe(`${admins}include if exists <local/vnet-dnsmasq>\n`);
    }
    const p = (rel: string) => path.join(dest, prefix, rel);
    expect(await readlink(p('bin/vnet'))).toBe(`${prefix}/lib/vnet/bin/vnet`);
    expect(lstatSync(p('libexec/vnet-bridge-helper')).mode & 0o7777).toBe(0o755);
    expect(existsSync(p('lib/tmpfiles.d/vnet.conf'))).toBe(true);
    expect(existsSync(path.join(dest, 'etc/dbus-1/system.d/org.vnet.Vnet1.conf'))).toBe(true);
    const service = await readFile(p('lib/systemd/system/vnetd.service'), 'utf8');
    const socket = await readFile(p('lib/systemd/system/vnetd.socket'), 'utf8');
    const dbusService = await readFile(p('share/dbus-1/system-services/org.vnet.Vnet1.service'), 'utf8');
    expect(activeLines(service)).toContain(`ExecStart=${prefix}/bin/vnetd`);
    expect(activeLines(dbusService)).toContain(`Exec=${prefix}/bin/vnetd`);
    for (const text of [service, socket, dbusService]) expect(activeLines(text).filter((l) => l.includes('/usr/local'))).toEqual([]);
    const verify = await verifyUnits(dest, prefix);
    expect(verify.aboutUs).toEqual([]);
    expect(verify.exitCode).toBe(0);

    // The admin adds a network into the folder install made; uninstall keeps it (and its folders).
    await writeFile(path.join(dest, 'etc/vnet/networks/mine.toml'), 'bridge = "vnmine"\naddress = "10.78.0.1/24"\n');
    const r = await make('uninstall', dest, prefix);
    expect(r.exitCode, r.all).toBe(0);
    expect(snapshot(dest)).toEqual(['etc/', 'etc/apparmor.d/', 'etc/apparmor.d/local/', 'etc/apparmor.d/local/usr.sbin.dnsmasq', 'etc/vnet/', 'etc/vnet/networks/', 'etc/vnet/networks/mine.toml']);
    // the admin's hook keeps its lines; vnet's include stays (`if exists`: harmless without the file)
    expect(await readFile(hook, 'utf8')).toBe(`${admins}include if exists <local/vnet-dnsmasq>\n`);

    const again = await make('uninstall', dest, prefix);
    expect(again.exitCode).not.toBe(0);
    expect(again.stderr).toContain(`no manifest ${dest}${prefix}/lib/vnet/install-manifest`);
  }, 180_000);
});
