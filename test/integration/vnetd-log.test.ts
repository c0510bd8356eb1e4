/**
 * The log `vnet up` (as root, with no vnetd answering) makes vnetd write: vnetd writes
 * $VNET_RUNTIME_DIR/vnetd.log itself, capped (VNET_LOG_MAX_BYTES, 8 MiB by default) with
 * one rotated vnetd.log.1; and a guest's DHCP flood (20,000 DISCOVERs from random MACs
 * against a network whose leases run out, so that dnsmasq has an error to log for many of
 * them) grows that log by a bounded amount: dnsmasq's routine DHCP lines are quiet, its
 * other lines are cut to 256 bytes and rate-limited per network.
 */
import { execa } from 'execa';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanupAll, createNetns, trackPid, untrackPid, veth, waitFor, type Netns } from '../support/netns.js';
import { ROOT, VNET, vnetEnv, type VnetEnv } from '../support/vnetd.js';

const DHCP = path.join(ROOT, 'test/support/drivers/load-dhcp.py');

/** a vnetd that `vnet up` started, in its own namespace */
class Started {
  pid = 0;
  constructor(
    readonly ns: Netns,
    readonly env: VnetEnv,
  ) {}

  get logFile(): string {
    return path.join(this.env.VNET_RUNTIME_DIR, 'vnetd.log');
  }

  async cli(args: string[]) {
    const r = await execa('ip', ['netns', 'exec', this.ns.name, process.execPath, VNET, ...args], {
      env: { ...process.env, ...this.env },
      extendEnv: false,
      reject: false,
      stdin: 'ignore',
    });
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  }

  /** `vnet up NAME`, which starts vnetd; remembers its pid */
  async up(name: string): Promise<void> {
    const r = await this.cli(['up', name]);
    expect(r.exitCode, r.stderr).toBe(0);
    const m = /^vnet: started vnetd \(pid (\d+), log (.*)\)$/m.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    this.pid = Number(m![1]);
    trackPid(this.pid);
    expect(m![2]).toBe(this.logFile);
  }

  /** lines of vnetd.log.1 and vnetd.log, oldest first */
  lines(): Array<Record<string, unknown>> {
    const text = [`${this.logFile}.1`, this.logFile].filter(existsSync).map((f) => readFileSync(f, 'utf8')).join('');
    return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  async stop(): Promise<void> {
    if (!this.pid) return;
    await this.cli(['down', 'flood', '--force']);
    try {
      process.kill(this.pid, 'SIGTERM');
    } catch {
      /* gone */
    }
    await waitFor('vnetd to exit', () => !existsSync(`/proc/${this.pid}`) || readFileSync(`/proc/${this.pid}/stat`, 'utf8').includes(') Z '), 15_000);
    untrackPid(this.pid);
    this.pid = 0;
  }
}

const started: Started[] = [];

afterAll(async () => {
  for (const s of started) await s.stop().catch(() => undefined);
  await cleanupAll();
});

function fileSize(f: string): number {
  return existsSync(f) ? statSync(f).size : 0;
}

describe('vnet up starts vnetd with a log it writes itself', () => {
  it('vnetd.log holds vnetd\'s JSON lines, rotates at VNET_LOG_MAX_BYTES into one vnetd.log.1', async () => {
    const ns = await createNetns('vlog');
    const cap = 4096;
    const s = new Started(ns, vnetEnv({ VNET_LOG_MAX_BYTES: String(cap), VNET_LOG_LEVEL: 'debug' }));
    started.push(s);
    await s.up('default');
    expect(readFileSync(`/proc/${s.pid}/comm`, 'utf8')).toBe('vnetd\n');
    // enough up/down cycles to write several times the cap (every step is a debug line)
    for (let i = 0; i < 6; i += 1) {
      expect((await s.cli(['down', 'default'])).exitCode).toBe(0);
      expect((await s.cli(['up', 'default'])).exitCode).toBe(0);
    }
    expect(existsSync(`${s.logFile}.1`)).toBe(true);
    expect(existsSync(`${s.logFile}.2`)).toBe(false);
    // the cap, give or take one line (a line goes whole into the next file)
    expect(fileSize(s.logFile)).toBeLessThanOrEqual(cap + 2048);
    expect(fileSize(`${s.logFile}.1`)).toBeLessThanOrEqual(cap + 2048);
    const lines = s.lines();
    // vnetd's own lines (dnsmasq's carry dnsmasq's pid)
    expect(lines.filter((l) => l.component !== 'dnsmasq').every((l) => l.pid === s.pid)).toBe(true);
    expect(lines.some((l) => l.msg === 'network up')).toBe(true);
    await s.stop();
  });
});

describe('a guest\'s DHCP flood', () => {
  it('20,000 DISCOVERs from random MACs grow vnetd.log by a bounded amount; DHCP keeps working', async () => {
    const host = await createNetns('vflood');
    const guest = await createNetns('vgflood');
    const env = vnetEnv();
    // 5 leases at most: past them every REQUEST for an offered address gets a DHCPNAK "no leases
    // left", an error line that quiet-dhcp does not hide (the routine DISCOVER/OFFER lines it does)
    writeFileSync(
      path.join(env.VNET_CONFIG_DIR, 'networks', 'flood.toml'),
      'bridge = "vnfld0"\naddress = "10.64.0.1/24"\ndhcp-range = ["10.64.0.10", "10.64.0.200"]\non-demand = false\ndhcp-lease-max = 5\n',
    );
    const s = new Started(host, env);
    started.push(s);
    await s.up('flood');
    await veth(host, 'vgfl0', guest, 'g0');
    await host.run('ip', ['link', 'set', 'vgfl0', 'master', 'vnfld0']);
    const before = fileSize(s.logFile);
    const t0 = Date.now();

    const hex = () => Math.floor(Math.random() * 256).toString(16).padStart(2, '0');
    // in runs of 4,000 MACs: the driver takes its spec as one argument (at most 128 KiB)
    let acks = 0;
    for (let run = 0; run < 5; run += 1) {
      const macs = Array.from({ length: 4000 }, () => `52:54:${hex()}:${hex()}:${hex()}:${hex()}`);
      const out = await guest.run('/usr/bin/python3', [DHCP, JSON.stringify({ iface: 'g0', macs, batch: 1000, waitMs: 200 })], { timeout: 120_000 });
      acks += (JSON.parse(out) as { acks: number }).acks;
    }
    const seconds = (Date.now() - t0) / 1000;

    expect(acks).toBe(5);
    expect(existsSync(`${s.logFile}.1`)).toBe(false); // not rotated: the growth below is all of it
    const grown = fileSize(s.logFile) - before;
    // a burst of 20 lines, then 1 line (and a count of the rest) a second, each under ~600 bytes
    // of JSON: generous bounds. Before: about 2 MB for 20,000 DISCOVERs.
    expect(grown).toBeLessThan(32 * 1024 + 2 * 600 * seconds);
    const dnsmasqLines = s.lines().filter((l) => l.component === 'dnsmasq');
    const counted = dnsmasqLines.filter((l) => typeof l.suppressed === 'number');
    expect(counted.length).toBeGreaterThan(0);
    expect(counted.reduce((n, l) => n + (l.suppressed as number), 0)).toBeGreaterThan(1000);
    for (const l of dnsmasqLines) expect(Buffer.byteLength(String(l.msg))).toBeLessThanOrEqual(256);

    // the network is still up, with its 5 leases
    const status = JSON.parse((await s.cli(['status', 'flood', '--json'])).stdout) as Array<{ state: string; leases: number }>;
    expect(status[0]).toMatchObject({ state: 'up', leases: 5 });
    await s.stop();
  }, 360_000);
});
