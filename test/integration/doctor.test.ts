/**
 * `vnet doctor` against real conditions, each made in throwaway namespaces, never in the root
 * one: IPv4 forwarding turned off under an up network, ufw's and Docker's FORWARD drops made with
 * iptables-nft the way they make them, a FORWARD policy in iptables-legacy that nft cannot see,
 * br_netfilter, a real dnsmasq holding port 53 on the wildcard address (and vnet's own dnsmasq
 * dying beside it), a route over a network's subnet, a bridge.conf without vnet's include, nft
 * missing from PATH, a /dev/net/tun that is no device, AppArmor's dnsmasq profile (profiles list and
 * /etc/apparmor.d stood in for: this kernel has no AppArmor), a user's libvirt qemu.conf, vnetd not
 * running, doctor as an unprivileged user. Doctor runs inside the test namespace, in a private mount
 * namespace (a passwd of the test's own over /etc/passwd; other paths as each test needs), with
 * vnet's folders in temp dirs, and its --json findings and exit code are what is checked.
 */
import { execa, type ResultPromise } from 'execa';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Finding } from '../../src/doctor/finding.js';
import { dockerOn } from '../support/docker-chains.js';
import { TestFirewalld } from '../support/firewalld.js';
import { cleanupAll, hostAndWan, tempDir, trackPid, waitFor, type Netns } from '../support/netns.js';
import { HELPER, ROOT, VNET, Vnetd, vnetEnv, type VnetEnv } from '../support/vnetd.js';

interface DoctorRun {
  exitCode: number;
  findings: Finding[];
  stderr: string;
}

interface DoctorOpts {
  /** shell lines run (as root) in doctor's private mount namespace before it starts */
  mounts?: string[];
  /** PATH doctor runs with */
  path?: string;
  user?: 'nobody';
  env?: Record<string, string>;
}

const work = tempDir('vnet-doctor-');
const home = path.join(work, 'home-alice');
const passwd = path.join(work, 'passwd');
// alice reads her own qemu.conf (doctor reads it as she could); nobody reads the passwd file
chmodSync(work, 0o755);
mkdirSync(path.join(home, '.config/libvirt'), { recursive: true });
// root's own, in a home only root may enter (as /root is): doctor as a user cannot read it
mkdirSync(path.join(work, 'home-root/.config/libvirt'), { recursive: true });
chmodSync(path.join(work, 'home-root'), 0o700);
writeFileSync(path.join(work, 'home-root/.config/libvirt/qemu.conf'), `bridge_helper = "${HELPER}"\n`);
writeFileSync(passwd, `root:x:0:0:root:${path.join(work, 'home-root')}:/bin/sh\nalice:x:1000:1000::${home}:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n`);

async function doctor(ns: Netns, env: VnetEnv, args: string[] = [], o: DoctorOpts = {}): Promise<DoctorRun> {
  const script = ['set -e', `mount --bind ${passwd} /etc/passwd`, ...(o.mounts ?? []), 'exec "$@"'].join('\n');
  const who = o.user ? ['setpriv', `--reuid=${o.user}`, '--regid=nogroup', '--clear-groups'] : [];
  const inner = [...who, 'env', ...(o.path ? [`PATH=${o.path}`] : []), process.execPath, VNET, 'doctor', '--json', ...args];
  const r = await execa('ip', ['netns', 'exec', ns.name, 'unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', ...inner], {
    env: { ...process.env, ...env, ...o.env },
    reject: false,
    stdin: 'ignore',
  });
  let findings: Finding[];
  try {
    findings = JSON.parse(String(r.stdout));
  } catch {
    throw new Error(`vnet doctor printed no JSON (exit ${r.exitCode}):\n${String(r.stdout)}\n${String(r.stderr)}`);
  }
  return { exitCode: r.exitCode ?? -1, findings, stderr: String(r.stderr) };
}

const of = (r: DoctorRun, check: string) => r.findings.filter((f) => f.check === check);
const wrong = (r: DoctorRun) => r.findings.filter((f) => !f.ok);
/** the one finding of `check` that is wrong */
function problem(r: DoctorRun, check: string): Finding {
  const bad = of(r, check).filter((f) => !f.ok);
  expect(bad, JSON.stringify(r.findings, null, 1)).toHaveLength(1);
  return bad[0]!;
}

afterAll(async () => {
  await cleanupAll();
});

describe('a host running vnetd with `default` up', () => {
  let host: Netns;
  let env: VnetEnv;
  let vnetd: Vnetd;

  beforeAll(async () => {
    ({ host } = await hostAndWan());
    env = vnetEnv();
    writeFileSync(path.join(env.VNET_CONFIG_DIR, 'networks', 'lab.toml'), 'bridge = "vnlab0"\naddress = "10.99.0.1/24"\ndhcp-range = ["10.99.0.10", "10.99.0.20"]\n');
    vnetd = await new Vnetd(host, env).start();
    expect((await vnetd.cli(['up', 'default'])).exitCode).toBe(0);
  }, 120_000);

  afterAll(async () => {
    await vnetd?.stop();
  });

  it('nothing wrong: exit 0, every check there, notes at most', async () => {
    const r = await doctor(host, env);
    expect(wrong(r)).toEqual([]);
    expect(r.exitCode).toBe(0);
    expect([...new Set(r.findings.map((f) => f.check))]).toEqual(['vnetd', 'programs', 'forwarding', 'foreign-drop', 'br-netfilter', 'dns-port', 'apparmor', 'selinux', 'tun', 'bridge-acl', 'libvirt-helper', 'firewalld', 'subnets']);
    for (const f of r.findings) expect(Object.keys(f)).toEqual(['check', 'ok', 'severity', 'problem', 'fix']);
  });

  it('IPv4 forwarding turned off under the up network: an error naming it and the sysctl; back on, exit 0', async () => {
    await host.run('sysctl', ['-qw', 'net.ipv4.ip_forward=0']);
    try {
      const r = await doctor(host, env);
      expect(r.exitCode).toBe(1);
      const f = problem(r, 'forwarding');
      expect(f.severity).toBe('error');
      expect(f.problem).toContain('IPv4 forwarding is off (net.ipv4.ip_forward = 0) while default (virbr0) is up');
      expect(f.fix).toContain('sudo sysctl -w net.ipv4.ip_forward=1');
    } finally {
      await host.run('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    }
    expect((await doctor(host, env)).exitCode).toBe(0);
  });

  it("ufw's FORWARD drop (iptables-nft, ufw's chains): the ufw fix for each bridge, and br_netfilter cutting guests apart; removed, exit 0", async () => {
    for (const line of ['-N ufw-before-forward', '-N ufw-user-forward', '-A FORWARD -j ufw-before-forward', '-A ufw-before-forward -j ufw-user-forward', '-P FORWARD DROP'])
      await host.run('iptables', ['-t', 'filter', ...line.split(' ')]);
    try {
      const r = await doctor(host, env);
      expect(r.exitCode).toBe(1);
      const f = problem(r, 'foreign-drop');
      expect(f.problem).toContain("ufw's default forward policy drops forwarded traffic (table ip filter, chain FORWARD)");
      expect(f.fix).toContain('sudo ufw route allow in on virbr0 && sudo ufw route allow in on vnlab0');
      // the namespace's br_netfilter: bridged frames pass FORWARD, so the drop parts guests too
      expect(await host.run('cat', ['/proc/sys/net/bridge/bridge-nf-call-iptables'])).toBe('1');
      expect(problem(r, 'br-netfilter').problem).toContain('guests of one bridge cannot reach each other');
      // the same, scoped to one network: its own bridge only
      const one = await doctor(host, env, ['lab']);
      expect(problem(one, 'foreign-drop').fix).toMatch(/^sudo ufw route allow in on vnlab0 {3}#/);
    } finally {
      await host.run('iptables', ['-t', 'filter', '-P', 'FORWARD', 'ACCEPT']);
      await host.run('iptables', ['-t', 'filter', '-F']);
      await host.run('iptables', ['-t', 'filter', '-X']);
    }
    expect((await doctor(host, env)).exitCode).toBe(0);
  });

  it('a FORWARD policy of DROP in iptables-legacy, which `nft list ruleset` does not show: found, with the fix; set back, exit 0', async () => {
    await host.run('iptables-legacy', ['-t', 'filter', '-P', 'FORWARD', 'DROP']);
    try {
      expect(await host.run('nft', ['list', 'ruleset'])).not.toContain('drop');
      const r = await doctor(host, env);
      expect(r.exitCode).toBe(1);
      const f = problem(r, 'foreign-drop');
      expect(f.problem).toContain("iptables-legacy's FORWARD chain has policy DROP");
      expect(f.fix).toContain('sudo iptables-legacy -I FORWARD -i virbr0 -j ACCEPT');
    } finally {
      await host.run('iptables-legacy', ['-t', 'filter', '-P', 'FORWARD', 'ACCEPT']);
    }
    expect((await doctor(host, env)).exitCode).toBe(0);
  });

  it('a route over a network\'s subnet: named with its interface; `vnet doctor default` leaves that network out, `vnet doctor nosuch` is exit 4', async () => {
    await host.run('ip', ['route', 'add', '10.99.0.0/16', 'via', '198.51.100.1']);
    try {
      const r = await doctor(host, env);
      expect(r.exitCode).toBe(1);
      expect(problem(r, 'subnets').problem).toContain('network "lab": subnet 10.99.0.0/24 is already in use by interface up0 (route 10.99.0.0/16)');
      expect((await doctor(host, env, ['vnlab0'])).exitCode).toBe(1);
      const other = await doctor(host, env, ['default']);
      expect(wrong(other)).toEqual([]);
      expect(other.exitCode).toBe(0);
      const none = await execa('ip', ['netns', 'exec', host.name, process.execPath, VNET, 'doctor', 'nosuch'], { env: { ...process.env, ...env }, reject: false, stdin: 'ignore' });
      expect(none.exitCode).toBe(4);
      expect(none.stderr).toContain('no network or bridge named "nosuch"');
    } finally {
      await host.run('ip', ['route', 'del', '10.99.0.0/16']);
    }
  });

  it("bridge.conf rewritten without vnet's include (and its first line): the stock helper's and gnome-boxes' warnings", async () => {
    const conf = path.join(env.VNET_QEMU_CONF_DIR, 'bridge.conf');
    const before = readFileSync(conf, 'utf8');
    expect(before.split('\n')[0]).toBe('allow virbr0');
    writeFileSync(conf, 'allow br0\n');
    try {
      const r = await doctor(host, env);
      expect(r.exitCode).toBe(1);
      const fs = of(r, 'bridge-acl');
      expect(fs.map((f) => f.severity)).toEqual(['warning', 'warning']);
      expect(fs[0]!.problem).toContain(`${conf} has no line \`include ${path.join(env.VNET_QEMU_CONF_DIR, 'vnet.conf')}\``);
      expect(fs[1]!.fix).toBe(`sudo sed -i '1i allow virbr0' ${conf}`);
    } finally {
      writeFileSync(conf, before);
    }
  });

  it('nft missing from PATH: the programs check names it and its package', async () => {
    const bin = path.join(work, 'bin-without-nft');
    mkdirSync(bin, { recursive: true });
    copyFileSync('/usr/sbin/dnsmasq', path.join(bin, 'dnsmasq'));
    const r = await doctor(host, env, [], { path: `${bin}:/usr/bin:/bin` });
    expect(r.exitCode).toBe(1);
    const f = problem(r, 'programs');
    expect(f.problem).toContain(`nft is not installed (not found in ${bin}:/usr/bin:/bin)`);
    expect(f.fix).toContain('sudo apt install nftables');
  });

  it('/dev/net/tun that is not the tun device (a file bound over it in doctor\'s mount namespace): an error', async () => {
    const fake = path.join(work, 'not-tun');
    writeFileSync(fake, '');
    const r = await doctor(host, env, [], { mounts: [`mount --bind ${fake} /dev/net/tun`] });
    expect(problem(r, 'tun').problem).toBe('/dev/net/tun is not the tun device (character device 10:200): vnetd cannot make taps');
    expect(r.exitCode).toBe(1);
  });

  it("AppArmor's dnsmasq profile in enforce mode without vnet's rules: an error; with what `make install` puts there: fine", async () => {
    const sec = path.join(work, 'securityfs');
    const etc = path.join(work, 'apparmor.d');
    mkdirSync(path.join(sec, 'apparmor'), { recursive: true });
    mkdirSync(path.join(etc, 'local'), { recursive: true });
    writeFileSync(path.join(sec, 'apparmor/profiles'), '/usr/sbin/dnsmasq (enforce)\n/usr/sbin/dnsmasq//libvirt_leaseshelper (enforce)\n');
    // the shape of Ubuntu's profile: dnsmasq's own folders and libvirt's, and the hook for site additions
    writeFileSync(path.join(etc, 'usr.sbin.dnsmasq'), '#include <tunables/global>\n/usr/sbin/dnsmasq flags=(attach_disconnected) {\n  #include <abstractions/base>\n  capability net_bind_service,\n  /var/lib/libvirt/dnsmasq/*.leases rw,\n  #include <local/usr.sbin.dnsmasq>\n}\n');
    writeFileSync(path.join(etc, 'local/usr.sbin.dnsmasq'), '# Site-specific additions and overrides for usr.sbin.dnsmasq.\n');
    const mounts = [`mount --bind ${sec} /sys/kernel/security`, 'mkdir -p /etc/apparmor.d', `mount --bind ${etc} /etc/apparmor.d`];
    const r = await doctor(host, env, [], { mounts });
    expect(r.exitCode).toBe(1);
    const f = problem(r, 'apparmor');
    expect(f.problem).toContain('AppArmor confines dnsmasq (profile in enforce mode)');
    expect(f.fix).toContain('sudo apparmor_parser -r /etc/apparmor.d/usr.sbin.dnsmasq');
    // what `make install` does: vnet's rules, and one include line in the hook
    copyFileSync(path.join(ROOT, 'etc/apparmor.d/local/vnet-dnsmasq'), path.join(etc, 'local/vnet-dnsmasq'));
    writeFileSync(path.join(etc, 'local/usr.sbin.dnsmasq'), `${readFileSync(path.join(etc, 'local/usr.sbin.dnsmasq'), 'utf8')}include if exists <local/vnet-dnsmasq>\n`);
    // the real apparmor_parser compiles the profile with vnet's rules through the hook (-Q: loads nothing)
    const parsed = await execa('apparmor_parser', ['-Q', '-K', '-p', '--base', etc, '-I', etc, '-I', '/etc/apparmor.d', path.join(etc, 'usr.sbin.dnsmasq')], { reject: false, stdin: 'ignore' });
    expect(parsed.exitCode, parsed.stderr).toBe(0);
    expect(parsed.stdout).toContain('/var/lib/vnet/dnsmasq/*.leases rwk,');
    const fixed = await doctor(host, env, [], { mounts });
    // all that is left: vnet's folders are temp dirs here, not the ones the rules name
    expect(of(fixed, 'apparmor')).toEqual([expect.objectContaining({ ok: true, severity: 'info', problem: expect.stringContaining("vnet's folders are moved") })]);
    expect(wrong(fixed)).toEqual([]);
  });

  it("a user's libvirt qemu.conf naming a helper that is not there: an error; naming vnet's helper: fine", async () => {
    const conf = path.join(home, '.config/libvirt/qemu.conf');
    writeFileSync(conf, 'bridge_helper = "/usr/local/libexec/gone/vnet-bridge-helper"\n');
    const r = await doctor(host, env);
    expect(r.exitCode).toBe(1);
    expect(problem(r, 'libvirt-helper').problem).toBe(`${conf} sets bridge_helper = "/usr/local/libexec/gone/vnet-bridge-helper", which does not exist: alice's session VMs with a bridged interface do not start`);
    writeFileSync(conf, `bridge_helper = "${HELPER}"\n`);
    expect((await doctor(host, env)).exitCode).toBe(0);
  });

  it("a user's qemu.conf that is a FIFO, or a symlink to /etc/shadow: doctor (root) neither hangs nor reads for them what they could not", async () => {
    const conf = path.join(home, '.config/libvirt/qemu.conf');
    rmSync(conf, { force: true });
    await execa('mkfifo', [conf]);
    const fifo = await doctor(host, env);
    expect(of(fifo, 'libvirt-helper')).toEqual([expect.objectContaining({ ok: true, severity: 'info', problem: expect.stringContaining(`could not read the libvirt qemu.conf of alice: ${conf} is not a regular file`) })]);
    rmSync(conf);
    symlinkSync('/etc/shadow', conf);
    const st = statSync('/etc/shadow');
    const shadow = await doctor(host, env);
    expect(of(shadow, 'libvirt-helper')).toEqual([expect.objectContaining({ ok: true, severity: 'info', problem: `could not read the libvirt qemu.conf of alice: ${conf} is not readable by uid 1000 (mode ${(st.mode & 0o7777).toString(8)}, owner ${st.uid}:${st.gid})` })]);
    rmSync(conf);
  });

  it('as an unprivileged user: says what it could not read, and still finds nothing wrong', async () => {
    const r = await doctor(host, env, [], { user: 'nobody' });
    expect(wrong(r)).toEqual([]);
    expect(r.exitCode).toBe(0);
    expect(of(r, 'foreign-drop')[0]).toMatchObject({ ok: true, severity: 'info', problem: expect.stringContaining('could not read the nftables ruleset') });
    expect(of(r, 'libvirt-helper')[0]!.problem).toContain('could not read the libvirt qemu.conf of root');
  });

  it("Docker's FORWARD drop (iptables-nft, Docker 28's chains): docker-compat is the fix; with it, vnet's accepts are in DOCKER-USER and exit 0", async () => {
    await dockerOn(host);
    const r = await doctor(host, env);
    expect(r.exitCode).toBe(1);
    const f = problem(r, 'foreign-drop');
    expect(f.problem).toContain("Docker's table ip filter, chain FORWARD has policy drop");
    expect(f.fix).toContain(`echo 'docker-compat = true' | sudo tee -a ${path.join(env.VNET_CONFIG_DIR, 'vnet.toml')}`);
    writeFileSync(path.join(env.VNET_CONFIG_DIR, 'vnet.toml'), 'docker-compat = true\n');
    await vnetd.stop();
    vnetd = await new Vnetd(host, env).start();
    await waitFor("vnet's rules in DOCKER-USER", async () => (await host.run('iptables', ['-t', 'filter', '-S', 'DOCKER-USER'])).includes('vnet:virbr0:nat'));
    const fixed = await doctor(host, env);
    expect(of(fixed, 'foreign-drop')).toEqual([expect.objectContaining({ ok: true, severity: 'info', problem: expect.stringContaining('vnet keeps its accepts in DOCKER-USER') })]);
    expect(wrong(fixed)).toEqual([]);
    expect(fixed.exitCode).toBe(0);
  });
});

describe('a host where another DNS server holds port 53 on the wildcard address, and no vnetd', () => {
  let host: Netns;
  let env: VnetEnv;
  let vnetd: Vnetd | undefined;
  let system: ResultPromise | undefined;

  beforeAll(async () => {
    ({ host } = await hostAndWan());
    env = vnetEnv();
    // a system dnsmasq as many hosts have it: no bind-interfaces, so it listens on 0.0.0.0:53
    const proc = (system = execa('ip', ['netns', 'exec', host.name, 'dnsmasq', '--keep-in-foreground', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--pid-file=', '--user=root', `--log-facility=${path.join(work, 'system-dnsmasq.log')}`], { reject: false, stdin: 'ignore' }));
    trackPid(proc.pid);
    await waitFor('the system dnsmasq on port 53', async () => / 0\.0\.0\.0:53 /.test(await host.run('ss', ['-Htln'])));
  }, 120_000);

  afterAll(async () => {
    await vnetd?.stop();
  });

  it('vnetd not running: an error saying so, and the other checks still ran (port 53 found, with its holder)', async () => {
    const r = await doctor(host, env);
    expect(r.exitCode).toBe(1);
    expect(problem(r, 'vnetd').problem).toContain(`cannot reach vnetd: vnetd is not running (no socket at ${path.join(env.VNET_RUNTIME_DIR, 'vnetd.sock')})`);
    const f = problem(r, 'dns-port');
    expect(f.severity).toBe('error');
    expect(f.problem).toMatch(/TCP 0\.0\.0\.0:53 by dnsmasq \(pid \d+\)/);
    expect(f.problem).toContain('default (virbr0)');
    expect(f.fix).toContain('bind-interfaces');
  });

  it("vnet's own dnsmasq cannot bind beside it, as doctor said: `vnet up` fails with dnsmasq's words; the server gone, port 53 is fine", async () => {
    vnetd = await new Vnetd(host, env).start();
    const up = await vnetd.cli(['up', 'default']);
    expect(up.exitCode).toBe(1);
    expect(up.stderr).toContain('dnsmasq: failed to create listening socket for 192.168.122.1: Address already in use');
    process.kill(system!.pid!, 'SIGKILL');
    await system;
    const r = await doctor(host, env);
    expect(of(r, 'dns-port')).toEqual([expect.objectContaining({ ok: true, severity: 'ok' })]);
  });

  it('a dnsmasq that keeps dying (killed at each restart until vnetd gives up): the failed network, its reason and the fix', async () => {
    expect((await vnetd!.cli(['up', 'default'])).exitCode).toBe(0);
    const state = async () => (JSON.parse((await vnetd!.cli(['status', 'default', '--json'])).stdout) as Array<{ state: string }>)[0]!.state;
    await waitFor('vnetd to give up on dnsmasq', async () => {
      for (const pid of vnetd!.children('dnsmasq')) process.kill(pid, 'SIGKILL');
      return (await state()) === 'failed';
    }, 45_000);
    const r = await doctor(host, env);
    expect(r.exitCode).toBe(1);
    const f = problem(r, 'dnsmasq');
    expect(f.problem).toMatch(/^network default failed: dnsmasq keeps failing: dnsmasq for network default failed 5 times in a row/);
    expect(f.fix).toContain('sudo vnet down default --force && sudo vnet up default');
    expect(of(r, 'vnetd')).toEqual([]);
  });
});

describe('a host where the real firewalld runs (on a private bus, in the test namespace)', () => {
  let host: Netns;
  let env: VnetEnv;
  let fw: TestFirewalld;
  let vnetd: Vnetd | undefined;

  beforeAll(async () => {
    ({ host } = await hostAndWan());
    fw = await TestFirewalld.start(host, { vnetFiles: false });
    env = vnetEnv(fw.env);
  }, 120_000);

  afterAll(async () => {
    await vnetd?.stop();
    await fw?.stop();
  });

  it("without vnet's zones: an error naming the zone, with make install and the reload", async () => {
    const r = await doctor(host, env);
    expect(r.exitCode).toBe(1);
    const f = problem(r, 'firewalld');
    expect(f.problem).toContain('firewalld runs and has no zone "vnet"');
    expect(f.fix).toContain('sudo make install && sudo firewall-cmd --reload');
  });

  it("with them installed and default up, its bridge in zone vnet: nothing wrong; taken out of the zone: a warning", async () => {
    fw.installVnetFiles();
    expect((await fw.cmd(['--reload'])).exitCode).toBe(0);
    vnetd = await new Vnetd(host, env).start();
    expect((await vnetd.cli(['up', 'default'])).exitCode).toBe(0);
    expect(await fw.zoneOf('virbr0')).toBe('vnet');
    const r = await doctor(host, env);
    expect(wrong(r)).toEqual([]);
    expect(r.exitCode).toBe(0);
    expect((await fw.cmd(['--zone=vnet', '--remove-interface=virbr0'])).exitCode).toBe(0);
    const out = await doctor(host, env);
    expect(out.exitCode).toBe(1);
    expect(problem(out, 'firewalld').problem).toContain('network default is up but its bridge virbr0 is in no firewalld zone');
  });
});
