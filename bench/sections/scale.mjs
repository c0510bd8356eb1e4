/**
 * Scale: N NAT networks brought up one after the other and all kept up, then taken down (each
 * operation timed from a client already connected: vnet's socket API, one virsh kept open for libvirt);
 * 1,000 live taps on one network (handoff --hold, from 16 users: the tap quota is 64 a user; the stock
 * helper as root); 64 VMs' worth of hand-offs at once from 8 users (8 at a time each). For each: time
 * of the last operations against the first (median of the last 10 over the first 10), ruleset lines
 * per network (`nft list ruleset` in the namespace: libvirt's iptables rules are nft rules there too),
 * total time, and the daemon's RSS.
 */
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { median, now, r1, r2, rssMb, start, until } from '../lib/proc.mjs';
import { VirshSession } from '../lib/libvirt.mjs';
import { BRIDGE, HANDOFF, NETWORK, STOCK_HELPER, VNET_HELPER } from '../lib/vnet.mjs';

/** Network i (1-based): name, bridge and its /24 (10.64.0.0 onwards). */
export const scaleNet = (i) => ({ name: `sc${i}`, bridge: `vns${i}`, cidr: `10.${64 + (i >> 8)}.${i & 255}.0` });

/** last/first: median of the last k samples over the median of the first k. */
export function growth(samples, k = 10) {
  if (samples.length < 2 * k) k = Math.max(1, Math.floor(samples.length / 2));
  return r2(median(samples.slice(-k)) / median(samples.slice(0, k)));
}

const rulesetLines = async (exec) => (await exec('nft', ['list', 'ruleset'])).stdout.split('\n').filter((l) => l.trim()).length;

/** At each checkpoint (a number of networks up): total time so far, RSS, ruleset lines per network. */
async function checkpoint(out, k, t0, rss, lines, lines0) {
  (out.at ??= {})[k] = { up_total_s: r2((now() - t0) / 1000), rss_mb: rss, ruleset_lines_per_network: r1((lines - lines0) / k) };
}

export async function vnetNetworks(b, n, { idle, checkpoints = [50] } = {}) {
  for (let i = 1; i <= n; i++) {
    const s = scaleNet(i);
    writeFileSync(path.join(b.networksDir, `${s.name}.toml`), `bridge = "${s.bridge}"\naddress = "${s.cidr.replace(/0$/, '1')}/24"\ndhcp-range = ["${s.cidr.replace(/0$/, '10')}", "${s.cidr.replace(/0$/, '200')}"]\non-demand = false\n`);
  }
  const exec = (c, a) => b.inNs(c, a);
  const lines0 = await rulesetLines(exec);
  const rss0 = rssMb(b.vnetdPid);
  const up = [];
  const t0 = now();
  const cp = {};
  let failed;
  for (let i = 1; i <= n; i++) {
    const t = now();
    try {
      await b.call('up', { name: scaleNet(i).name });
    } catch (err) {
      failed = { at: i, error: err.message };
      break;
    }
    up.push(now() - t);
    if (checkpoints.includes(i) && i < n) await checkpoint(cp, i, t0, rssMb(b.vnetdPid), await rulesetLines(exec), lines0);
  }
  const upTotal = now() - t0;
  const out = { n, up_ms: up.map(r1), up_total_s: r2(upTotal / 1000), up_growth: growth(up), rss_mb_before: rss0, ...cp, ...(failed ? { failed } : {}) };
  out.rss_mb = rssMb(b.vnetdPid);
  out.ruleset_lines_per_network = r1(((await rulesetLines(exec)) - lines0) / up.length);
  if (idle) out.idle = await idle();
  const down = [];
  const t1 = now();
  for (let i = up.length; i >= 1; i--) {
    const t = now();
    await b.call('down', { name: scaleNet(i).name });
    down.push(now() - t);
  }
  out.down_ms = down.map(r1);
  out.down_total_s = r2((now() - t1) / 1000);
  out.down_growth = growth([...down].reverse()); // the first down ran with every network up: "last" is the one with most up
  // as libvirt's are undefined after its run: the cold start that follows finds `default` alone
  for (let i = 1; i <= n; i++) rmSync(path.join(b.networksDir, `${scaleNet(i).name}.toml`), { force: true });
  return out;
}

export async function libvirtNetworks(lv, n, checkpoints = [50]) {
  for (let i = 1; i <= n; i++) {
    const s = scaleNet(i);
    await lv.define(s.name, s.bridge, s.cidr);
  }
  const exec = (c, a) => lv.exec(c, a);
  const lines0 = await rulesetLines(exec);
  const rss0 = rssMb(lv.pid);
  const v = new VirshSession(lv);
  const up = [];
  const failures = [];
  const t0 = now();
  const cp = {};
  for (let i = 1; i <= n; i++) {
    const r = await v.cmd(`net-start ${scaleNet(i).name}`);
    if (r.ok) up.push(r.ms);
    else failures.push({ at: i, error: r.out.trim().split('\n').find((l) => l.includes('error')) ?? r.out.trim() });
    if (checkpoints.includes(i) && i < n) await checkpoint(cp, i, t0, rssMb(lv.pid), await rulesetLines(exec), lines0);
  }
  const out = { ...cp, n, up_ms: up.map(r1), up_total_s: r2((now() - t0) / 1000), up_growth: growth(up), rss_mb_before: rss0, rss_mb: rssMb(lv.pid), started: up.length };
  if (failures.length) out.failures = { count: failures.length, first: failures[0] };
  out.ruleset_lines_per_network = r1(((await rulesetLines(exec)) - lines0) / Math.max(1, up.length));
  const dnsmasq = await lv.dnsmasqPids();
  out.dnsmasq = dnsmasq.length;
  out.dnsmasq_rss_mb = r1(dnsmasq.map(rssMb).reduce((a, x) => a + x, 0));
  const down = [];
  const t1 = now();
  for (let i = n; i >= 1; i--) {
    const r = await v.cmd(`net-destroy ${scaleNet(i).name}`);
    if (r.ok) down.push(r.ms);
  }
  out.down_ms = down.map(r1);
  out.down_total_s = r2((now() - t1) / 1000);
  out.down_growth = growth([...down].reverse());
  for (let i = 1; i <= n; i++) await v.cmd(`net-undefine ${scaleNet(i).name}`);
  await v.close();
  return out;
}

/** Start a `handoff --hold` (as uid, through exec) and wait for its JSON line; the child holds its taps until release(). */
async function holdTaps(execArgv, what, env) {
  const p = start(execArgv[0], execArgv.slice(1), { stdin: 'pipe', env });
  await until(what, () => p.out.includes('}\n') || p.exitCode !== null, 300_000, 5);
  const line = p.out.split('\n').find((l) => l.startsWith('{'));
  if (!line) throw new Error(`bench: ${what}: ${p.out.slice(-1000)}`);
  return { p, j: JSON.parse(line) };
}

const release = async (held) => {
  for (const h of held) h.p.stdin.end();
  await Promise.all(held.map((h) => h.p.done));
};

/** n live taps, `perUser` a user (uids from 2001), one user after the other; each hand-off's time in order. */
export async function vnetTaps(b, n, perUser = 64) {
  await b.call('up', { name: NETWORK });
  const held = [];
  const samples = [];
  const t0 = now();
  for (let k = 0, uid = 2001; k < n; k += perUser, uid++) {
    const m = Math.min(perUser, n - k);
    const argv = ['ip', 'netns', 'exec', b.ns, 'setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', HANDOFF, VNET_HELPER, BRIDGE, String(m), '--samples', '--hold'];
    const h = await holdTaps(argv, `${m} taps for uid ${uid}`, b.env);
    held.push(h);
    samples.push(...h.j.samples_ms);
    if (h.j.failed) throw new Error(`bench: ${h.j.failed} hand-offs failed for uid ${uid}: ${h.p.out.slice(-500)}`);
  }
  const total = now() - t0;
  const out = { n: samples.length, ms: samples.map(r2), total_s: r2(total / 1000), growth: growth(samples, 50), live_taps: await b.taps(), rss_mb: rssMb(b.vnetdPid) };
  await release(held);
  await until('the taps to go', async () => (await b.taps()) === 0, 120_000, 200);
  return out;
}

export async function stockTaps(lv, n) {
  await lv.virsh(['net-start', NETWORK]);
  const argv = ['nsenter', '-t', String(lv.holder), '-m', '-n', HANDOFF, STOCK_HELPER, BRIDGE, String(n), '--samples', '--hold'];
  const t0 = now();
  const h = await holdTaps(argv, `${n} taps by the stock helper`);
  const out = { n: h.j.ok, ms: h.j.samples_ms.map(r2), total_s: r2((now() - t0) / 1000), growth: growth(h.j.samples_ms, 50) };
  await release([h]);
  await lv.virsh(['net-destroy', NETWORK]);
  return out;
}

/** `vms` hand-offs at once from `users` users (vnet: uids from 3001; stock: root), each user's in a row; taps held. */
async function parallel(spawnArgv, users, perUser, env) {
  const t0 = now();
  const held = await Promise.all(Array.from({ length: users }, (_, u) => holdTaps(spawnArgv(u, perUser), `parallel hand-offs of user ${u}`, env)));
  const wall = now() - t0;
  const ops = held.flatMap((h) => h.j.samples_ms.map((ms, i) => ({ ms, start: h.j.start_ms[i] }))).sort((a, b) => a.start - b.start);
  const failed = held.reduce((a, h) => a + h.j.failed, 0);
  await release(held);
  const ms = ops.map((o) => o.ms);
  return { n: ops.length, users, failed, wall_s: r2(wall / 1000), p50_ms: r1(median(ms)), max_ms: r1(Math.max(...ms)), growth: growth(ms, 8) };
}

export async function vnetParallel(b, users, perUser) {
  await b.call('up', { name: NETWORK });
  const argv = (u, m) => ['ip', 'netns', 'exec', b.ns, 'setpriv', `--reuid=${3001 + u}`, `--regid=${3001 + u}`, '--clear-groups', HANDOFF, VNET_HELPER, BRIDGE, String(m), '--samples', '--hold'];
  const out = await parallel(argv, users, perUser, b.env);
  await until('the taps to go', async () => (await b.taps()) === 0, 60_000, 200);
  return out;
}

export async function stockParallel(lv, users, perUser) {
  await lv.virsh(['net-start', NETWORK]);
  const argv = (_u, m) => ['nsenter', '-t', String(lv.holder), '-m', '-n', HANDOFF, STOCK_HELPER, BRIDGE, String(m), '--samples', '--hold'];
  const out = await parallel(argv, users, perUser);
  await lv.virsh(['net-destroy', NETWORK]);
  return out;
}
