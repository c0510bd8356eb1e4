/**
 * Long loops and figures moved out of the tests (`make test` runs short versions and prints nothing).
 * Each section is a self-contained function; a count of 0 skips it. The ones that need vnetd use the
 * bench's (its `default` network); the others run in a namespace of their own.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { alive, childrenOf, made, procStatus, run, summary, until, withNamespace } from '../lib/proc.mjs';
import { BRIDGE, HANDOFF, NETWORK, ROOT, VNET_HELPER } from '../lib/vnet.mjs';

const NAT_DRIVER = path.join(ROOT, 'test/support/drivers/nat-nft.mjs');
const DHCP_DRIVER = path.join(ROOT, 'test/support/drivers/dhcp-supervisor.mjs');
const LOAD_DRIVER = path.join(ROOT, 'test/support/drivers/load-handoffs.py');
export const MOVED_DEFAULTS = { nftApplies: 20, dnsmasqStarts: 10, loadHandoffs: 200, handoffFdLoop: 1000, restarts: 50 };
export const MOVED_OPTIONS = {
  '--nft-applies': 'nftApplies',
  '--dnsmasq-starts': 'dnsmasqStarts',
  '--load-handoffs': 'loadHandoffs',
  '--handoff-fd-loop': 'handoffFdLoop',
  '--restarts': 'restarts',
};




const vnetdFds = (pid) => readdirSync(`/proc/${pid}/fd`).length;

/** vnetd's fd count once it stops changing (connections close a moment after their replies). */
async function settledFds(pid) {
  let last = -1;
  await until('vnetd’s fds to settle', () => {
    const n = vnetdFds(pid);
    const same = n === last;
    last = n;
    return same;
  }, 5000);
  return last;
}

/** nat: vnet's transaction for one network (what `vnet up` applies), n times through its Nft class. */
async function nftApplyFigures(b, n) {
  const { rebuild } = await import(path.join(ROOT, 'dist/firewall/table.js'));
  const { firewallPart } = await import(path.join(ROOT, 'dist/firewall/rules.js'));
  const { parseDefinition } = await import(path.join(ROOT, 'dist/spec/parse.js'));
  const tx = path.join(b.dir, 'nft-bench.json');
  writeFileSync(tx, JSON.stringify(rebuild([firewallPart(parseDefinition('bench', 'bench', 'bridge = "vnbench0"\naddress = "10.251.0.1/24"\n'))])));
  return withNamespace('nft', async (ns) => {
    const r = await run('ip', ['netns', 'exec', ns, 'sh', '-c', `exec "$0" "$1" bench "$2" < "$3"`, process.execPath, NAT_DRIVER, String(n), tx]);
    return summary(JSON.parse(r.stdout).times);
  });
}

/**
 * dhcp: dnsmasq started by vnet's supervisor on a bridge of its own: spawn → serving, and the
 * whole start() (config written, `dnsmasq --test`, spawn, serving), n starts; one serving
 * dnsmasq's RSS.
 */
async function dnsmasqFigures(b, n) {
  const { parseDefinition } = await import(path.join(ROOT, 'dist/spec/parse.js'));
  const { dnsmasqConfig, confFilePath, leaseFilePath } = await import(path.join(ROOT, 'dist/dhcp/dnsmasq.js'));
  const runtimeDir = path.join(b.dir, 'dnsmasq-bench-run');
  const stateDir = path.join(b.dir, 'dnsmasq-bench-state');
  for (const d of [path.join(runtimeDir, 'dnsmasq'), path.join(stateDir, 'dnsmasq')]) mkdirSync(d, { recursive: true });
  const def = parseDefinition('bench', '(bench)', 'bridge = "vnbench0"\naddress = "10.252.0.1/24"\ndhcp-range = ["10.252.0.10", "10.252.0.99"]\n');
  const spec = (extra) => {
    const file = path.join(b.dir, `dnsmasq-spec-${Object.keys(extra).join('') || 'serve'}.json`);
    const base = { name: 'bench', confPath: confFilePath(runtimeDir, 'bench'), config: dnsmasqConfig(def, { runtimeDir, stateDir }), leaseFile: leaseFilePath(stateDir, 'bench') };
    writeFileSync(file, JSON.stringify({ ...base, ...extra }));
    return file;
  };
  return withNamespace('dnsmasq', async (ns) => {
    const inNs = (cmd, args) => run('ip', ['netns', 'exec', ns, cmd, ...args]);
    await inNs('ip', ['link', 'add', 'vnbench0', 'type', 'bridge']);
    await inNs('sysctl', ['-qw', 'net.ipv6.conf.vnbench0.disable_ipv6=1']);
    await inNs('ip', ['addr', 'add', '10.252.0.1/24', 'dev', 'vnbench0']);
    await inNs('ip', ['link', 'set', 'vnbench0', 'up']);
    const lines = (await inNs(process.execPath, [DHCP_DRIVER, spec({ bench: n })])).stdout.trim().split('\n');
    const e = JSON.parse(lines[lines.length - 1]);
    if (e.event !== 'bench') throw new Error(`bench: dnsmasq driver: ${JSON.stringify(e)}`);
    // one that stays up, for its memory: the driver prints {event:"serving",pid}, SIGTERM stops both
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, DHCP_DRIVER, spec({})], { stdio: ['ignore', 'pipe', 'ignore'] });
    made.pids.add(child.pid);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    await until('dnsmasq to serve', () => out.includes('\n'), 10_000);
    const serving = JSON.parse(out.split('\n')[0]);
    const rssMb = serving.pid ? +(procStatus(serving.pid).rssKb / 1024).toFixed(1) : null;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
    made.pids.delete(child.pid);
    return { spawn_to_serving: summary(e.ms), whole_start: summary(e.total), serving_rss_mb: rssMb };
  });
}

/** load: n hand-offs on virbr0 from 10 uids, 30 in flight (at most 4 a uid), each tap held 50-350 ms. */
async function loadHandoffFigures(b, n) {
  await b.cli(['up', NETWORK]);
  const jobs = Array.from({ length: n }, (_, i) => ({ uid: 1 + (i % 10), bridge: BRIDGE, holdMs: 50 + ((i * 37) % 300) }));
  const spec = { helper: VNET_HELPER, runtimeDir: b.env.VNET_RUNTIME_DIR, jobs, concurrency: 30, perUid: 4 };
  const r = await b.inNs('/usr/bin/python3', [LOAD_DRIVER, JSON.stringify(spec)]);
  const recs = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  const got = recs.filter((x) => 'got' in x);
  const s = recs.find((x) => 'summary' in x).summary;
  return { n, ok: s.ok, refused: s.refused, driver_errors: s.driverErrors.length, seconds: s.seconds, per_handoff: summary(got.map((g) => g.ms)) };
}

/**
 * The long version of tap.test.ts's fd-leak loop (it runs 100): n hand-offs back to back
 * through build/handoff on the up `default` network; vnetd's fd count before and after, taps left.
 * (Not the same loop as any other 1,000-hand-off figure here: this one is about leaks.)
 */
async function handoffFdLoopFigures(b, n) {
  await b.cli(['up', NETWORK]);
  const pid = b.vnetdPid;
  const before = await settledFds(pid);
  const r = await b.inNs(HANDOFF, [VNET_HELPER, BRIDGE, String(n)], { check: false });
  const res = JSON.parse(r.stdout);
  const taps = async () => JSON.parse((await b.inNs('ip', ['-j', 'link', 'show', 'type', 'tun'])).stdout || '[]').length;
  await until('the taps to go', async () => (await taps()) === 0, 60_000);
  const after = await settledFds(pid);
  return { n, ok: res.ok, failed: res.failed, seconds: +(r.ms / 1000).toFixed(1), p50_ms: res.p50_ms, vnetd_fds_before: before, vnetd_fds_after: after, taps_left: await taps() };
}

/**
 * The long version of restart.test.ts's loop (it runs 4): with `default` up, n restarts of vnetd,
 * SIGTERM and SIGKILL in turn, each timed from the signal to the new vnetd answering; then
 * what a user would check: as many rules as right after a clean up (20 since the dispatch
 * chains: 5 base rules and 15 of the network), one dnsmasq, one bridge.
 */
async function restartLoopFigures(b, n) {
  await b.cli(['up', NETWORK]);
  const ruleCount = async () => {
    const table = await b.inNs('nft', ['-j', 'list', 'table', 'inet', 'vnet'], { check: false });
    return table.code === 0 ? JSON.parse(table.stdout).nftables.filter((o) => 'rule' in o).length : 0;
  };
  const clean = await ruleCount();
  const times = [];
  for (let i = 0; i < n; i++) {
    const old = b.vnetdPid;
    const t0 = process.hrtime.bigint();
    process.kill(old, i % 2 ? 'SIGKILL' : 'SIGTERM');
    await until('vnetd to exit', () => !alive(old), 10_000);
    await b.startVnetd();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const rules = await ruleCount();
  const bridges = JSON.parse((await b.inNs('ip', ['-j', '-d', 'link', 'show', 'type', 'bridge'])).stdout || '[]').map((l) => l.ifname);
  const dnsmasq = childrenOf(b.vnetdPid, 'dnsmasq').length;
  return { n, restart: summary(times), rules, rules_after_clean_up: clean, dnsmasq, bridges, consistent: rules === clean && clean > 0 && dnsmasq === 1 && bridges.join() === BRIDGE };
}

export async function movedFigures(b, opts, fig) {
  const sections = [
    ['nftApplies', 'nft_apply', () => nftApplyFigures(b, opts.nftApplies)],
    ['dnsmasqStarts', 'dnsmasq_start', () => dnsmasqFigures(b, opts.dnsmasqStarts)],
    ['loadHandoffs', 'load_handoffs', () => loadHandoffFigures(b, opts.loadHandoffs)],
    ['handoffFdLoop', 'handoff_fd_loop', () => handoffFdLoopFigures(b, opts.handoffFdLoop)],
    ['restarts', 'restart_loop', () => restartLoopFigures(b, opts.restarts)],
  ];
  for (const [opt, key, fn] of sections) {
    if (!opts[opt]) continue;
    process.stderr.write(`bench: ${key} x${opts[opt]}\n`);
    fig[key] = await fn();
  }
}

export function reportMoved(fig) {
  const lines = [];
  const s = (x) => `min ${x.min_ms} / p50 ${x.p50_ms} / p90 ${x.p90_ms} / max ${x.max_ms} ms (n ${x.n})`;
  if (fig.nft_apply) lines.push(`nft apply of one network's table: ${s(fig.nft_apply)}`);
  if (fig.dnsmasq_start) {
    const d = fig.dnsmasq_start;
    lines.push(`dnsmasq spawn -> serving: ${s(d.spawn_to_serving)}`, `dnsmasq whole start(): ${s(d.whole_start)}; serving RSS ${d.serving_rss_mb} MB`);
  }
  if (fig.load_handoffs) {
    const l = fig.load_handoffs;
    lines.push(`${l.n} concurrent hand-offs (10 uids, 30 in flight): ${l.seconds} s, ${l.ok} ok, ${l.refused} refused, ${l.driver_errors} driver errors; each ${s(l.per_handoff)}`);
  }
  if (fig.handoff_fd_loop) {
    const h = fig.handoff_fd_loop;
    lines.push(`${h.n} hand-offs back to back (fd leak check): ${h.ok} ok, ${h.failed} failed in ${h.seconds} s (p50 ${h.p50_ms} ms); vnetd fds ${h.vnetd_fds_before} -> ${h.vnetd_fds_after}, taps left ${h.taps_left}`);
  }
  if (fig.restart_loop) {
    const r = fig.restart_loop;
    lines.push(`${r.n} vnetd restarts with ${NETWORK} up: ${s(r.restart)}; then ${r.rules} rules (${r.rules_after_clean_up ?? '?'} after a clean up), ${r.dnsmasq} dnsmasq, bridges [${r.bridges.join(', ')}]: ${r.consistent ? 'consistent' : 'NOT consistent'}`);
  }
  if (lines.length) process.stdout.write(`${lines.join('\n')}\n\n`);
}

