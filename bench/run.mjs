#!/usr/bin/env node
/**
 * `make bench`: vnet against libvirt (libvirtd + virsh + qemu-bridge-helper), in throwaway
 * namespaces, peers measured in the same run. See bench/README.md for every section and option.
 *
 *   node bench/run.mjs [--rounds 9] [--per-round 20] [--on-demand 5] [--loop 1000] [--updown 20] [--idle-s 10] [--settle-s 12]
 *                      [--cold 5] [--networks 200] [--libvirt-networks 200] [--taps 1000] [--parallel-users 8]
 *                      [--parallel-per-user 8] [--churn 10000] [--idle-exit-s 2] [--libvirt 1] [--vnetd FILE]
 *                      [--nft-applies 20] [--dnsmasq-starts 10] [--load-handoffs 200] [--handoff-fd-loop 1000] [--restarts 50]
 *
 * A count of 0 skips its section (--libvirt 0: no libvirt at all). --vnetd FILE runs another vnetd
 * entry point (a patched copy of bin/vnetd + dist/) for an A/B.
 *
 * Needs root. Creates and deletes its own namespaces and temp folder; never touches the root
 * namespace, /etc, /etc/qemu, /etc/vnet, /run/vnet or the host's libvirt; kills only processes it
 * started and, before deleting its namespaces, whatever still runs in them, by pid. Prints a table
 * and one line `{"bench":"vnet",...}`; writes bench/results/STAMP.{md,json}, latest.md and the charts.
 */
import { readFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cleanup, run } from './lib/proc.mjs';
import { writeResults } from './lib/report.mjs';
import { Bench, BRIDGE, FLOOR_HELPER, HANDOFF, NETWORK, ROOT, STOCK_HELPER, VNET_HELPER } from './lib/vnet.mjs';
import { activationLeftovers, coldVnet } from './sections/cold.mjs';
import { idleFigures, idleNoNetwork, idleOneNetwork, upDownFigures } from './sections/daemon.mjs';
import { churnFigures } from './sections/footprint.mjs';
import { handoffFigures, TARGET_RATIO } from './sections/handoff.mjs';
import { MOVED_DEFAULTS, MOVED_OPTIONS, movedFigures, reportMoved } from './sections/moved.mjs';
import { libvirtFigures } from './sections/peers.mjs';
import { vnetNetworks, vnetParallel, vnetTaps } from './sections/scale.mjs';

const DEFAULTS = {
  rounds: 9, perRound: 20, warmup: 10, onDemand: 5, loop: 1000, updown: 20, idleS: 10, settleS: 12, cold: 5, networks: 200,
  libvirtNetworks: [200], taps: 1000, parallelUsers: 8, parallelPerUser: 8, churn: 10000, idleExitS: 2, libvirt: 1,
};
const NAMES = {
  '--rounds': 'rounds', '--per-round': 'perRound', '--updown': 'updown', '--idle-s': 'idleS', '--settle-s': 'settleS', '--on-demand': 'onDemand',
  '--loop': 'loop', '--cold': 'cold', '--networks': 'networks', '--taps': 'taps', '--parallel-users': 'parallelUsers',
  '--parallel-per-user': 'parallelPerUser', '--churn': 'churn', '--idle-exit-s': 'idleExitS', '--libvirt': 'libvirt', ...MOVED_OPTIONS,
};

function options(argv) {
  const o = { ...DEFAULTS, vnetd: path.join(ROOT, 'bin/vnetd'), ...MOVED_DEFAULTS };
  for (let i = 0; i < argv.length; i++) {
    const [a, v] = [argv[i], argv[i + 1]];
    if (a === '--vnetd' && v) o.vnetd = path.resolve(v);
    else if (a === '--libvirt-networks' && v !== undefined && /^\d+(,\d+)*$|^0$/.test(v)) o.libvirtNetworks = v.split(',').map(Number).filter((n) => n > 0);
    else if (NAMES[a] && v !== undefined && /^\d+$/.test(v)) o[NAMES[a]] = Number(v);
    else throw new Error(`bench: unknown or incomplete option ${JSON.stringify(a)} (see bench/README.md)`);
    i++;
  }
  if (o.rounds < 1 || o.perRound < 1) throw new Error('bench: --rounds and --per-round must be at least 1');
  return o;
}

async function version(cmd, args, re) {
  const r = await run(cmd, args, { check: false }).catch(() => ({ stdout: '', stderr: '' }));
  return re.exec(`${r.stdout}\n${r.stderr}`)?.[1] ?? null;
}

async function machine() {
  const two = (x) => String(x).padStart(2, '0');
  const d = new Date();
  return {
    date: `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}`,
    cpus: os.cpus().length,
    cpu_model: os.cpus()[0]?.model.trim(),
    mem_gib: +(os.totalmem() / 2 ** 30).toFixed(1),
    load_before: os.loadavg().map((x) => +x.toFixed(2)),
    kernel: os.release(),
    node: process.version,
    vnet: JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version,
    qemu: await version('qemu-system-x86_64', ['--version'], /version ([\d.]+)/),
    nft: await version('nft', ['--version'], /v([\d.]+)/),
    dnsmasq: await version('dnsmasq', ['--version'], /version ([\d.]+)/),
  };
}

async function main() {
  const opts = options(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new Error('bench: run as root (it creates network namespaces and taps)');
  for (const f of [HANDOFF, VNET_HELPER, FLOOR_HELPER, path.join(ROOT, 'dist/daemon/main.js')])
    if (!existsSync(f)) throw new Error(`bench: ${f} is missing; run \`make build build/handoff build/tap-floor\` first`);
  if (!existsSync(STOCK_HELPER)) throw new Error(`bench: ${STOCK_HELPER} is missing (Debian package qemu-system-common)`);
  if (opts.libvirt && !existsSync('/usr/sbin/libvirtd')) throw new Error('bench: /usr/sbin/libvirtd is missing (`make bench-deps`), or pass --libvirt 0');
  const t0 = Date.now();
  const fig = { machine: await machine(), options: opts };

  const b = new Bench(opts);
  await b.setup();
  await b.startVnetd();
  await idleNoNetwork(b, opts, fig);
  await handoffFigures(b, opts, fig);
  await upDownFigures(b, opts, fig);
  await idleOneNetwork(b, opts, fig);
  await movedFigures(b, opts, fig);
  if (opts.networks) {
    process.stderr.write(`bench: ${opts.networks} networks up one after the other\n`);
    fig.networks = { [opts.networks]: await vnetNetworks(b, opts.networks, { idle: opts.idleS ? () => idleFigures(b.vnetdPid, opts.idleS, opts.settleS) : undefined }) };
  }
  if (opts.taps) {
    process.stderr.write(`bench: ${opts.taps} live taps on ${BRIDGE}\n`);
    fig.taps = await vnetTaps(b, opts.taps);
  }
  if (opts.parallelUsers) {
    process.stderr.write(`bench: ${opts.parallelUsers * opts.parallelPerUser} hand-offs at once from ${opts.parallelUsers} users\n`);
    fig.parallel = await vnetParallel(b, opts.parallelUsers, opts.parallelPerUser);
  }
  if (opts.churn) {
    process.stderr.write(`bench: vnetd memory across ${opts.churn} hand-offs\n`);
    fig.churn = await churnFigures(b, opts.churn, opts.settleS);
  }
  await b.call('down', { name: NETWORK }).catch(() => undefined);
  await b.stopVnetd();
  if (opts.cold) {
    process.stderr.write(`bench: vnet cold start to first tap x${opts.cold}\n`);
    fig.cold = await coldVnet(b, opts);
  }
  if (opts.idleExitS) {
    process.stderr.write('bench: vnetd idle exit with socket activation\n');
    fig.leftovers = await activationLeftovers(b, opts.idleExitS);
  }
  if (opts.libvirt) await libvirtFigures(b, opts, fig);
  fig.machine.load_after = os.loadavg().map((x) => +x.toFixed(2));
  fig.machine.seconds = Math.round((Date.now() - t0) / 1000);

  reportMoved(fig);
  report(fig, opts);
  const { md, stamp } = await writeResults(fig);
  process.stdout.write(`\n${md}\nwritten: bench/results/${stamp}.{md,json}, latest.md and charts (${fig.machine.seconds} s)\n`);
}

function report(fig, opts) {
  const h = fig.handoff;
  const row = (cells, w) => cells.map((c, i) => String(c).padEnd(w[i])).join('  ').trimEnd();
  const lines = [];
  if (h) {
    lines.push(`tap hand-off on ${BRIDGE}, ${opts.rounds} interleaved rounds of ${opts.perRound} (ms)`);
    const w = [26, 6, 8, 8, 8, 8];
    lines.push(row(['helper', 'n', 'min', 'p50', 'p90', 'max'], w));
    for (const [name, s] of [['qemu-bridge-helper (stock)', h.stock], ['vnet-bridge-helper', h.vnet], ['floor (tap-floor, root)', h.floor], ...(h.vnet_on_demand ? [['vnet, first (on demand)', h.vnet_on_demand]] : [])])
      lines.push(row([name, s.n, s.min_ms, s.p50_ms, s.p90_ms, s.max_ms], w));
    lines.push(`p50 ratio vnet/stock: ${h.p50_ratio} (target <= ${TARGET_RATIO}: ${h.target_met ? 'met' : 'NOT met'}); floor/stock ${h.floor_p50_ratio}`);
  }
  const l = fig.handoff_loop;
  if (l) {
    lines.push(`${l.n} back-to-back hand-offs, each tap closed at once: ${l.ok} ok, ${l.failed} failed in ${l.seconds} s (p50 ${l.p50_ms} ms, p90 ${l.p90_ms} ms, max ${l.max_ms} ms)`);
    if (l.first_error) lines.push(`  first error: ${l.first_error}`);
  }
  const u = fig.updown;
  if (u) {
    lines.push('', `network ${NETWORK}, median of ${u.n} (ms)`, row(['', 'CLI (wall)', 'daemon', 'API'], [12, 12, 8, 8]));
    lines.push(row(['vnet up', u.up_cli_ms, u.up_daemon_ms, u.up_api_ms], [12, 12, 8, 8]), row(['vnet down', u.down_cli_ms, u.down_daemon_ms, u.down_api_ms], [12, 12, 8, 8]));
    lines.push(`(CLI wall times include \`ip netns exec\`: ${u.netns_exec_ms} ms for \`ip netns exec NS true\`)`);
  }
  lines.push('', `vnetd idle: ${opts.idleS} s measured after ${opts.settleS} s to settle`);
  const iw = [18, 8, 8, 9, 12, 16];
  lines.push(row(['', 'RSS MB', 'threads', 'wakeups', 'dnsmasq MB', 'dnsmasq wakeups'], iw));
  for (const [name, s] of [['no network', fig.idle_no_network], [`${NETWORK} up`, fig.idle_one_network]])
    if (s) lines.push(row([name, s.rss_mb, s.threads, s.wakeups, s.dnsmasq_rss_mb ?? '-', s.dnsmasq_wakeups ?? '-'], iw));
  process.stdout.write(lines.join('\n') + '\n');
  process.stdout.write(JSON.stringify({ bench: 'vnet', ...fig }) + '\n');
}

let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`bench: ${sig}, cleaning up\n`);
    cleanup().finally(() => process.exit(130));
  });
}

main()
  .then(cleanup)
  .catch(async (err) => {
    if (stopping) return; // a signal is cleaning up; what failed was what it killed
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    await cleanup();
    process.exit(1);
  });
