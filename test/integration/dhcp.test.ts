/**
 * One supervised dnsmasq per network, for real, in throwaway namespaces:
 *
 *   wan (198.51.100.1) --up0-- host (198.51.100.2; bridge br-t 10.88.0.1/24) --vg0/eth0-- guest
 *
 * The supervisor runs inside `host` through test/support/drivers/dhcp-supervisor.mjs
 * (which imports dist/), and the guest asks for a lease with busybox udhcpc.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { confFilePath, dnsmasqConfig, dnsmasqTestArgs, leaseFilePath } from '../../src/dhcp/dnsmasq.js';
import { readLeaseFile, readLeases } from '../../src/dhcp/leases.js';
import { parseDefinition } from '../../src/spec/parse.js';
import type { NetworkSpec } from '../../src/spec/spec.js';
import { procStatus } from '../support/proc.js';
import { cleanupAll, createNetns, hostAndWan, pidsWithArg, tempDir, trackPid, veth, type Netns } from '../support/netns.js';
import { ROOT } from '../support/vnetd.js';

const DRIVER = path.join(ROOT, 'test/support/drivers/dhcp-supervisor.mjs');
const DNS_PROBE = path.join(ROOT, 'test/support/dns-probe.py');
const CAP_NET_ADMIN = 1n << 12n;

type DriverEvent = { event: string; [k: string]: unknown };

/** A supervisor running in a namespace, with the events it printed. */
class Driver {
  readonly events: DriverEvent[] = [];
  stderr = '';
  private constructor(readonly proc: ChildProcess) {}

  static start(ns: Netns, spec: object): Driver {
    const specFile = path.join(tempDir('vnet-dhcp-spec-'), 'spec.json');
    writeFileSync(specFile, JSON.stringify(spec));
    const proc = spawn('ip', ['netns', 'exec', ns.name, process.execPath, DRIVER, specFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    trackPid(proc.pid);
    const d = new Driver(proc);
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      const e = JSON.parse(line) as DriverEvent;
      d.events.push(e);
      if (typeof e.pid === 'number') trackPid(e.pid);
    });
    proc.stderr!.on('data', (b: Buffer) => (d.stderr += b.toString()));
    return d;
  }

  async next(event: string | string[], timeoutMs = 10_000, from = 0): Promise<DriverEvent> {
    const names = Array.isArray(event) ? event : [event];
    const t0 = Date.now();
    for (;;) {
      const e = this.events.slice(from).find((x) => names.includes(x.event));
      if (e) return e;
      if (Date.now() - t0 > timeoutMs) {
        throw new Error(`no ${names.join('/')} event in ${timeoutMs} ms; got ${JSON.stringify(this.events)}; stderr: ${this.stderr}`);
      }
      await sleep(25);
    }
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise((r) => this.proc.once('exit', r));
    this.proc.kill('SIGTERM');
    await exited;
  }
}


/** pids of live processes whose command line names this config file (a `dnsmasq --test` check is not a server) */
function processesUsing(confPath: string): number[] {
  const checks = new Set(pidsWithArg('--test'));
  return pidsWithArg(`--conf-file=${confPath}`).filter((pid) => !checks.has(pid));
}

/** uid and gid of vnet-dnsmasq (`make test-deps` creates it) */
function dnsmasqAccount(): { uid: number; gid: number } {
  const f = execFileSync('getent', ['passwd', 'vnet-dnsmasq'], { encoding: 'utf8' }).split(':');
  return { uid: Number(f[2]), gid: Number(f[3]) };
}


function net(name: string, bridge: string, third: number, opts: { dhcp?: boolean } = {}): NetworkSpec {
  const range = opts.dhcp === false ? '' : `dhcp-range = ["10.${third}.0.100", "10.${third}.0.150"]\n`;
  return parseDefinition(name, 'test', `bridge = "${bridge}"\naddress = "10.${third}.0.1/24"\n${range}dhcp-lease-max = 100\ndomain = "vnet.test"\n`);
}

describe('dnsmasq supervisor in namespaces', () => {
  let host: Netns;
  let wan: Netns;
  let guest: Netns;
  const runtimeDir = tempDir('vnet-dhcp-run-');
  const stateDir = tempDir('vnet-dhcp-state-');
  const scratch = tempDir('vnet-dhcp-guest-');
  const script = path.join(scratch, 'udhcpc.sh');
  const def = net('tnet', 'br-t', 88);
  const confPath = confFilePath(runtimeDir, def.name);
  const leaseFile = leaseFilePath(stateDir, def.name);
  let driver: Driver;
  let guestMac = '';
  let guestIp = '';
  let dnsmasqPid = 0;

  async function addBridge(ns: Netns, name: string, cidr: string) {
    await ns.run('ip', ['link', 'add', name, 'type', 'bridge']);
    // no IPv6 on the bridge (as libvirt does for IPv4-only networks): dnsmasq then needs no
    // CAP_NET_BIND_SERVICE to wait out duplicate address detection
    await ns.run('sysctl', ['-qw', `net.ipv6.conf.${name}.disable_ipv6=1`]);
    await ns.run('ip', ['addr', 'add', cidr, 'dev', name]);
    await ns.run('ip', ['link', 'set', name, 'up']);
  }

  async function udhcpc(extra: string[] = []) {
    return guest.tryRun('busybox', ['udhcpc', '-i', 'eth0', '-n', '-q', '-t', '5', '-T', '1', '-s', script, ...extra]);
  }

  function startDriver(): Driver {
    return Driver.start(host, { name: def.name, confPath, config: dnsmasqConfig(def, { runtimeDir, stateDir }), leaseFile });
  }

  /**
   * The supervisor serving tnet and the guest holding its lease as guest1, as the lease test
   * leaves them: kept when they are so, made again when a test before failed or stopped them.
   */
  async function serving(): Promise<void> {
    const alive = driver && driver.proc.exitCode === null && driver.proc.signalCode === null;
    if (alive && guestIp && processesUsing(confPath).includes(dnsmasqPid)) return;
    await driver?.stop();
    driver = startDriver();
    const e = await driver.next(['serving', 'error']);
    expect(e.event, String(e.message)).toBe('serving');
    dnsmasqPid = e.pid as number;
    const r = await udhcpc(['-x', 'hostname:guest1']);
    expect(r.exitCode, r.stderr).toBe(0);
    guestIp = readFileSync(`${script}.ip`, 'utf8').trim();
  }

  beforeAll(async () => {
    // the driver runs the compiled DnsmasqSupervisor from dist/, which the global setup built
    if (!existsSync(path.join(ROOT, 'dist/dhcp/supervisor.js')))
      throw new Error(`no ${ROOT}/dist/dhcp/supervisor.js: the global setup's make build did not emit it`);

    ({ host, wan } = await hostAndWan());
    guest = await createNetns('vg');
    await addBridge(host, 'br-t', '10.88.0.1/24');
    await veth(host, 'vg0', guest, 'eth0');
    await host.run('ip', ['link', 'set', 'vg0', 'master', 'br-t']);
    guestMac = JSON.parse(await guest.run('ip', ['-j', 'link', 'show', 'eth0']))[0].address;

    writeFileSync(
      script,
      ['#!/bin/sh', 'case "$1" in', '  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/$mask" dev "$interface"; echo "$ip" > "$0.ip" ;;', 'esac', ''].join('\n'),
    );
    chmodSync(script, 0o755);
  });

  afterAll(async () => {
    await driver?.stop();
    await cleanupAll();
  });

  it('writes a config that dnsmasq --test accepts', async () => {
    const conf = path.join(scratch, 'check.conf');
    writeFileSync(conf, dnsmasqConfig(def, { runtimeDir, stateDir }));
    const r = await execa('dnsmasq', dnsmasqTestArgs(conf), { reject: false });
    expect(r.stderr).toMatch(/syntax check OK/);
    expect(r.exitCode).toBe(0);
  });

  it('serves a lease to a guest, as vnet-dnsmasq with no capability but CAP_NET_ADMIN', async () => {
    await driver?.stop();
    guestIp = '';
    driver = startDriver();
    const serving = await driver.next(['serving', 'error']);
    expect(serving).toMatchObject({ event: 'serving' });
    dnsmasqPid = serving.pid as number;

    const st = procStatus(dnsmasqPid);
    const { uid, gid } = dnsmasqAccount();
    expect(st.Uid).toBe(`${uid}\t${uid}\t${uid}\t${uid}`);
    expect(st.Gid).toBe(`${gid}\t${gid}\t${gid}\t${gid}`);
    expect(st.Groups).toBe('');
    // dnsmasq refuses to serve DHCP without CAP_NET_ADMIN (ARP injection); everything else is gone
    expect(BigInt(`0x${st.CapEff}`)).toBe(CAP_NET_ADMIN);
    expect(BigInt(`0x${st.CapPrm}`)).toBe(CAP_NET_ADMIN);
    // no inotify instance (no resolv file to watch): the kernel gives a user 128, and every
    // network's dnsmasq runs as the same account
    const fds = readdirSync(`/proc/${dnsmasqPid}/fd`).map((f) => readlinkSync(`/proc/${dnsmasqPid}/fd/${f}`));
    expect(fds.filter((l) => l.includes('inotify'))).toEqual([]);

    // the config is ours alone, 0644, not a symlink
    expect(readFileSync(confPath, 'utf8')).toBe(dnsmasqConfig(def, { runtimeDir, stateDir }));
    const st2 = lstatSync(confPath);
    expect({ file: st2.isFile(), mode: st2.mode & 0o777, uid: st2.uid }).toEqual({ file: true, mode: 0o644, uid: 0 });

    const r = await udhcpc(['-x', 'hostname:guest1']);
    expect(r.exitCode, r.stderr).toBe(0);
    guestIp = readFileSync(`${script}.ip`, 'utf8').trim();
    const last = Number(guestIp.split('.')[3]);
    expect(guestIp.startsWith('10.88.0.')).toBe(true);
    expect(last).toBeGreaterThanOrEqual(100);
    expect(last).toBeLessThanOrEqual(150);
    expect(await guest.run('ip', ['-4', '-o', 'addr', 'show', 'eth0'])).toContain(`${guestIp}/24`);

    const leases = await readLeases(leaseFile);
    expect(leases).toEqual([expect.objectContaining({ mac: guestMac, ip: guestIp, hostname: 'guest1' })]);
    expect(leases[0]!.expires).toBeGreaterThan(Date.now() / 1000);
  });

  it('answers DNS on the bridge, and not on the uplink or loopback', async () => {
    await serving();
    const inside = await guest.tryRun('busybox', ['nslookup', 'guest1.vnet.test', '10.88.0.1']);
    expect(inside.exitCode, inside.stderr).toBe(0);
    expect(inside.stdout).toContain(guestIp);

    // bound to the bridge address alone: on the uplink and loopback nothing listens, so the
    // kernel refuses at once (ICMP port unreachable, TCP reset); a wildcard socket that
    // merely stayed silent would show as a timeout instead
    expect(JSON.parse(await guest.run('/usr/bin/python3', [DNS_PROBE, '10.88.0.1', 'guest1.vnet.test']))).toEqual({ udp: 'answered', tcp: 'connected' });
    expect(JSON.parse(await wan.run('/usr/bin/python3', [DNS_PROBE, '198.51.100.2', 'guest1.vnet.test']))).toEqual({ udp: 'refused', tcp: 'refused' });
    expect(JSON.parse(await host.run('/usr/bin/python3', [DNS_PROBE, '127.0.0.1', 'guest1.vnet.test']))).toEqual({ udp: 'refused', tcp: 'refused' });
  });

  it('holds no tap and no file but its lease file', async () => {
    await serving();
    const targets = readdirSync(`/proc/${dnsmasqPid}/fd`).map((fd) => readlinkSync(`/proc/${dnsmasqPid}/fd/${fd}`));
    expect(targets).toContain(leaseFile);
    const files = targets.filter((t) => t.startsWith('/') && t !== '/dev/null' && t !== leaseFile);
    expect(files).toEqual([]);
    expect(targets.filter((t) => /^(socket|pipe|anon_inode:inotify|\/)/.test(t) === false)).toEqual([]);
  });

  it('restarts dnsmasq after kill -9; the lease survives and the guest keeps its address', async () => {
    await serving();
    const from = driver.events.length;
    process.kill(dnsmasqPid, 'SIGKILL');
    const restarted = await driver.next('restarted', 5000, from);
    const newPid = restarted.pid as number;
    expect(newPid).not.toBe(dnsmasqPid);
    expect(processesUsing(confPath)).toEqual([newPid]);
    dnsmasqPid = newPid;

    const leases = await readLeases(leaseFile);
    expect(leases.map((l) => [l.mac, l.ip])).toEqual([[guestMac, guestIp]]);

    const r = await udhcpc(['-x', 'hostname:guest1']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(readFileSync(`${script}.ip`, 'utf8').trim()).toBe(guestIp);
  });

  it('stop() ends dnsmasq and leaves nothing running', async () => {
    await serving();
    await driver.stop();
    expect(driver.events.at(-1)).toMatchObject({ event: 'stopped' });
    expect(processesUsing(confPath)).toEqual([]);
    // the leases are kept for the next start
    expect((await readLeaseFile(leaseFile)).leases).toHaveLength(1);
  });

  it('rejects a config dnsmasq refuses, with its message, and leaves nothing running', async () => {
    const badConf = path.join(runtimeDir, 'dnsmasq', 'bad.conf');
    const d = Driver.start(host, { name: 'bad', confPath: badConf, config: 'interface=br-t\nbogus-option=1\n' });
    const e = await d.next(['serving', 'error']);
    expect(e.event).toBe('error');
    expect(e.name).toBe('DnsmasqError');
    expect(e.message).toMatch(/dnsmasq rejected the config of network bad .*bad option at line 2/);
    await d.stop();
    expect(processesUsing(badConf)).toEqual([]);
  });

  it('rejects a network whose bridge does not exist, and leaves nothing running', async () => {
    const missing = net('missing', 'br-missing', 90);
    const conf = confFilePath(runtimeDir, missing.name);
    const d = Driver.start(host, { name: missing.name, confPath: conf, config: dnsmasqConfig(missing, { runtimeDir, stateDir }) });
    const e = await d.next(['serving', 'error']);
    expect(e.event).toBe('error');
    expect(e.message).toMatch(/dnsmasq for network missing exited with code \d+ before serving: dnsmasq: failed to create listening socket for 10\.90\.0\.1: Cannot assign requested address/);
    await d.stop();
    expect(processesUsing(conf)).toEqual([]);
  });

  it('a symlink planted at the config path is refused and its target left unchanged', async () => {
    await addBridge(host, 'br-s', '10.93.0.1/24');
    const def3 = net('planted', 'br-s', 93);
    const conf = confFilePath(runtimeDir, def3.name);
    const precious = path.join(scratch, 'precious-conf');
    writeFileSync(precious, 'precious\n');
    mkdirSync(path.dirname(conf), { recursive: true });
    symlinkSync(precious, conf);
    const d = Driver.start(host, { name: def3.name, confPath: conf, config: dnsmasqConfig(def3, { runtimeDir, stateDir }) });
    const e = await d.next(['serving', 'error']);
    expect(e.event).toBe('error');
    expect(e.message).toMatch(/planted\.conf: is a symlink; refusing to write through it/);
    await d.stop();
    expect(readFileSync(precious, 'utf8')).toBe('precious\n');
    expect(processesUsing(conf)).toEqual([]);
  });

  it('gives up after repeated quick failures instead of looping', async () => {
    await addBridge(host, 'br-f', '10.91.0.1/24');
    const def2 = net('flaky', 'br-f', 91);
    const conf = confFilePath(runtimeDir, def2.name);
    // a symlink planted at the lease path (the config path has its own test above): its target must stay untouched
    const precious = path.join(scratch, 'precious');
    writeFileSync(precious, 'precious\n');
    const leases2 = leaseFilePath(stateDir, def2.name);
    mkdirSync(path.dirname(leases2), { recursive: true });
    symlinkSync(precious, leases2);
    const d = Driver.start(host, {
      name: def2.name,
      confPath: conf,
      config: dnsmasqConfig(def2, { runtimeDir, stateDir }),
      leaseFile: leaseFilePath(stateDir, def2.name),
      backoff: { initialMs: 50, maxMs: 400, maxFailures: 3 },
    });
    const serving = await d.next(['serving', 'error']);
    expect(serving.event, String(serving.message)).toBe('serving');
    expect(readFileSync(precious, 'utf8')).toBe('precious\n');
    expect(lstatSync(conf).isFile()).toBe(true);
    expect(lstatSync(conf).mode & 0o777).toBe(0o644);
    expect(lstatSync(leases2).isFile()).toBe(true);
    expect(readdirSync(path.dirname(leases2)).filter((f) => f.startsWith('flaky.leases.bad-'))).toHaveLength(1);
    // the bridge goes away under dnsmasq: every restart now fails at once
    await host.run('ip', ['link', 'del', 'br-f']);
    process.kill(serving.pid as number, 'SIGKILL');
    const failed = await d.next('failed', 10_000);
    expect(failed.reason).toMatch(/network flaky failed 3 times in a row; not restarting\. Last: .*failed to create listening socket for 10\.91\.0\.1/);
    // the longest backoff is 400 ms: a supervisor still looping would have restarted within twice that
    await sleep(800);
    expect(processesUsing(conf)).toEqual([]);
    expect(d.events.filter((e) => e.event === 'restarted')).toEqual([]);
    await d.stop();
    expect(readFileSync(precious, 'utf8')).toBe('precious\n');
  });

  it('a network without DHCP runs dnsmasq with no capabilities at all', async () => {
    await addBridge(host, 'br-d', '10.92.0.1/24');
    const dnsOnly = net('dnsonly', 'br-d', 92, { dhcp: false });
    const conf = confFilePath(runtimeDir, dnsOnly.name);
    const d = Driver.start(host, { name: dnsOnly.name, confPath: conf, config: dnsmasqConfig(dnsOnly, { runtimeDir, stateDir }) });
    const serving = await d.next(['serving', 'error']);
    expect(serving.event, String(serving.message)).toBe('serving');
    const st = procStatus(serving.pid as number);
    const { uid } = dnsmasqAccount();
    expect(st.Uid).toBe(`${uid}\t${uid}\t${uid}\t${uid}`);
    expect(BigInt(`0x${st.CapEff}`)).toBe(0n);
    expect(BigInt(`0x${st.CapPrm}`)).toBe(0n);
    await d.stop();
    expect(processesUsing(conf)).toEqual([]);
  });
});
