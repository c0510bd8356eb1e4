#!/usr/bin/env node
/**
 * `make bench`: vnet's performance figures, measured in a throwaway network namespace.
 *
 *   node bench/run.mjs [--rounds 10] [--per-round 20] [--on-demand 5] [--loop 1000] [--updown 20] [--idle-s 10] [--settle-s 12] [--vnetd FILE]
 *                      [--nft-applies 20] [--dnsmasq-starts 10] [--load-handoffs 200] [--handoff-fd-loop 1000] [--restarts 50]
 *
 * a. Tap hand-off as QEMU sees it (build/handoff): the stock qemu-bridge-helper (as root, its
 *    bridge.conf `allow virbr0` on an overlay over /etc in a private mount namespace) against
 *    build/vnet-bridge-helper asking a running vnetd, on virbr0 of the `default` network brought up
 *    with `vnet up default` first. Rounds alternate (stock, vnet, vnet, stock, ...) so machine
 *    noise hits both alike; the p50 ratio vnet/stock has a target of <= 0.8. Then the first,
 *    on-demand hand-off from a down network (which brings the network up).
 * b. `vnet up default` / `vnet down default`: wall time of the CLI process (Node start included,
 *    run through `ip netns exec` in the namespace; that overhead alone, `ip netns exec NS true`, is
 *    reported as netns_exec_ms) and the daemon's own time (its "network up"/"network down" log
 *    lines), median of N each.
 * c. vnetd idle: RSS, threads and wakeups (context switches of all its threads) in 10 s, with no
 *    network up and then with `default` up (dnsmasq's RSS and wakeups too), each after 12 s to
 *    settle (V8 runs a few memory-reducing GCs some seconds after start-up or activity).
 *
 * d. Back-to-back hand-offs (build/handoff --close-each, --loop of them, 0 to skip) from one uid
 *    with the default tap quota (64), each tap closed as soon as it is received: every one must
 *    succeed (taps the client closed are not counted against it while they are torn down).
 *
 * e. Figures the test suite used to print (test/integration/nat, dhcp, load), and the long versions of
 *    two loops the suite runs short (see "Long loops and figures moved out of the tests" below).
 *
 * --vnetd FILE runs another vnetd entry point (a patched copy of bin/vnetd + dist/, say) to compare.
 * A count of 0 skips its section.
 *
 * Needs root. Creates and deletes its own namespace and temp folder; never touches the root
 * namespace, /etc, /etc/qemu, /etc/vnet or /run/vnet; kills only processes it started and, before
 * deleting its namespace, whatever still runs in it (`ip netns pids`), by pid. The CLI runs in the
 * namespace too, so a `vnet up` that finds no vnetd can only start one there.
 * Prints a table, then one line `{"bench":"vnet",...}` with every figure.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, chmodSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..');
const HANDOFF = path.join(ROOT, 'build/handoff');
const VNET_HELPER = path.join(ROOT, 'build/vnet-bridge-helper');
const STOCK_HELPER = '/usr/lib/qemu/qemu-bridge-helper';
const VNET_CLI = path.join(ROOT, 'bin/vnet');
const BRIDGE = 'virbr0';
const NETWORK = 'default';
const TARGET_RATIO = 0.8;

// ------------------------------------------------------------------ options

function options(argv) {
  const o = { rounds: 10, perRound: 20, warmup: 10, onDemand: 5, loop: 1000, updown: 20, idleS: 10, settleS: 12, vnetd: path.join(ROOT, 'bin/vnetd'), ...MOVED_DEFAULTS };
  const names = { '--rounds': 'rounds', '--per-round': 'perRound', '--updown': 'updown', '--idle-s': 'idleS', '--settle-s': 'settleS', '--on-demand': 'onDemand', '--loop': 'loop', ...MOVED_OPTIONS };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--vnetd' && v) {
      o.vnetd = path.resolve(v);
      i++;
    } else if (names[a] && v !== undefined && /^\d+$/.test(v)) {
      o[names[a]] = Number(v);
      i++;
    } else {
      throw new Error(`bench: unknown or incomplete option ${JSON.stringify(a)} (see the comment at the top of bench/run.mjs)`);
    }
  }
  if (o.rounds < 1 || o.perRound < 1) throw new Error('bench: --rounds and --per-round must be at least 1');
  return o;
}

// ------------------------------------------------------------------ what we made, and its removal

const made = { ns: undefined, dir: undefined, pids: new Set(), vnetd: undefined, extraNs: new Set() };

async function cleanup() {
  // vnetd stops its dnsmasq on SIGTERM; should it not, they are killed too
  if (made.vnetd && alive(made.vnetd)) for (const pid of childrenOf(made.vnetd, 'dnsmasq')) made.pids.add(pid);
  await terminate(made.pids);
  made.pids.clear();
  if (made.ns) {
    // Whatever still runs in our namespace (a dnsmasq whose vnetd died, a vnetd that `vnet up`
    // started there) is ours too: `ip netns del` would leave it running.
    await terminate(new Set(await netnsPids(made.ns)));
    await run('ip', ['netns', 'del', made.ns], { check: false });
  }
  made.ns = undefined;
  for (const ns of made.extraNs) await deleteNamespace(ns);
  if (made.dir) rmSync(made.dir, { recursive: true, force: true });
  made.dir = undefined;
}

/** SIGTERM each pid, wait up to 5 s for them to go, SIGKILL the rest. */
async function terminate(pids) {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      pids.delete(pid);
    }
  }
  const deadline = Date.now() + 5000;
  while ([...pids].some(alive) && Date.now() < deadline) await sleep(50);
  for (const pid of pids) {
    try {
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    } catch {
      /* gone in between */
    }
  }
}

/** pids of the processes in network namespace ns (`ip netns pids`); none when it is gone. */
async function netnsPids(ns) {
  const r = await run('ip', ['netns', 'pids', ns], { check: false });
  return r.code === 0 ? r.stdout.split(/\s+/).filter((p) => /^\d+$/.test(p)).map(Number) : [];
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Run a command to its end; resolves {code, stdout, stderr, ms}. Rejects on non-zero exit unless check is false. */
function run(cmd, args, { env, check = true } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { env: env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    made.pids.add(child.pid);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      made.pids.delete(child.pid);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (check && code !== 0) reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${stderr.trim() || stdout.trim()}`));
      else resolve({ code, stdout, stderr, ms });
    });
  });
}

// ------------------------------------------------------------------ statistics

function pct(sorted, p) {
  return sorted[Math.max(0, Math.ceil(sorted.length * p) - 1)];
}

function summary(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const r = (x) => +x.toFixed(3);
  return { n: s.length, min_ms: r(s[0]), p50_ms: r(pct(s, 0.5)), p90_ms: r(pct(s, 0.9)), max_ms: r(s[s.length - 1]) };
}

const median = (xs) => (xs.length ? pct([...xs].sort((a, b) => a - b), 0.5) : undefined);

// ------------------------------------------------------------------ /proc

function procStatus(pid) {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (k) => Number(new RegExp(`^${k}:\\s*(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  return { rssKb: field('VmRSS'), threads: field('Threads') };
}

/** Context switches (voluntary + involuntary) summed over every thread of pid. */
function wakeups(pid) {
  let total = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const text = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      for (const m of text.matchAll(/^(?:non)?voluntary_ctxt_switches:\s*(\d+)/gm)) total += Number(m[1]);
    } catch {
      /* thread gone */
    }
  }
  return total;
}

function childrenOf(ppid, comm) {
  const out = [];
  for (const f of readdirSync('/proc')) {
    if (!/^\d+$/.test(f)) continue;
    try {
      const stat = readFileSync(`/proc/${f}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      if (Number(rest[1]) === ppid && name === comm) out.push(Number(f));
    } catch {
      /* raced */
    }
  }
  return out;
}

async function idleFigures(pid, seconds, settleSeconds, extra = []) {
  // V8 runs a few memory-reducing GCs in the seconds after start-up or activity: let them pass
  await sleep(settleSeconds * 1000);
  const before = [pid, ...extra].map(wakeups);
  await sleep(seconds * 1000);
  const after = [pid, ...extra].map(wakeups);
  const st = procStatus(pid);
  const out = { rss_mb: +(st.rssKb / 1024).toFixed(1), threads: st.threads, wakeups: after[0] - before[0] };
  extra.forEach((p, i) => {
    out.dnsmasq_rss_mb = +(procStatus(p).rssKb / 1024).toFixed(1);
    out.dnsmasq_wakeups = after[i + 1] - before[i + 1];
  });
  return out;
}

// ------------------------------------------------------------------ the pieces under test

class Bench {
  constructor(opts) {
    this.opts = opts;
    this.dir = made.dir = mkdtempSync(path.join(os.tmpdir(), 'vnet-bench-'));
    chmodSync(this.dir, 0o755);
    this.ns = `vnbench-${process.pid}`;
    this.env = {
      ...process.env,
      VNET_CONFIG_DIR: path.join(this.dir, 'etc-vnet'),
      VNET_STATE_DIR: path.join(this.dir, 'var-lib-vnet'),
      VNET_RUNTIME_DIR: path.join(this.dir, 'run-vnet'),
      VNET_QEMU_CONF_DIR: path.join(this.dir, 'etc-qemu'),
      // never this machine's system bus (a real firewalld there would get vnet's bindings)
      DBUS_SYSTEM_BUS_ADDRESS: `unix:path=${path.join(this.dir, 'no-system-bus')}`,
    };
    for (const d of [path.join(this.env.VNET_CONFIG_DIR, 'networks'), this.env.VNET_QEMU_CONF_DIR, path.join(this.dir, 'upper'), path.join(this.dir, 'work')])
      mkdirSync(d, { recursive: true });
    this.logFile = path.join(this.dir, 'vnetd.log');
  }

  async setup() {
    await run('ip', ['netns', 'add', this.ns]);
    made.ns = this.ns;
    await this.inNs('ip', ['link', 'set', 'lo', 'up']);
  }

  inNs(cmd, args, opts = {}) {
    return run('ip', ['netns', 'exec', this.ns, cmd, ...args], { env: this.env, ...opts });
  }

  /** vnetd in the namespace, its JSON log to a file (a pipe we do not drain fast enough would slow it). */
  async startVnetd() {
    const log = openSync(this.logFile, 'a');
    const child = spawn('ip', ['netns', 'exec', this.ns, process.execPath, this.opts.vnetd], { env: this.env, stdio: ['ignore', log, log] });
    closeSync(log);
    // `ip netns exec` execs the command, so this pid is vnetd's
    this.vnetdPid = made.vnetd = child.pid;
    made.pids.add(child.pid);
    child.on('exit', () => made.pids.delete(child.pid));
    const socket = path.join(this.env.VNET_RUNTIME_DIR, 'vnetd.sock');
    const { call } = await import(path.join(ROOT, 'dist/api/client.js'));
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (!alive(child.pid)) throw new Error(`vnetd exited at start:\n${readFileSync(this.logFile, 'utf8')}`);
      if (existsSync(socket)) {
        try {
          await call(socket, 'ping', {}, 2000);
          return;
        } catch {
          /* not yet */
        }
      }
      if (Date.now() > deadline) throw new Error(`vnetd did not answer within 15 s:\n${readFileSync(this.logFile, 'utf8')}`);
      await sleep(50);
    }
  }

  /**
   * `vnet ARGS` as a user would run it, inside the namespace: run as root outside it, a
   * `vnet up` that found no vnetd answering (ours died) would start one in the root namespace.
   * The wall time includes `ip netns exec` (a few ms; see bench/README.md).
   */
  cli(args) {
    return this.inNs(process.execPath, [VNET_CLI, ...args]);
  }

  /** Daemon-side times (ms) of every log line with this msg so far. */
  loggedMs(msg) {
    const out = [];
    for (const line of readFileSync(this.logFile, 'utf8').split('\n')) {
      if (!line.includes(`"msg":"${msg}"`)) continue;
      try {
        const j = JSON.parse(line);
        if (typeof j.ms === 'number') out.push(j.ms);
      } catch {
        /* not JSON */
      }
    }
    return out;
  }

  async handoffVnet(n) {
    const r = await this.inNs(HANDOFF, [VNET_HELPER, BRIDGE, String(n), '--samples']);
    return JSON.parse(r.stdout).samples_ms;
  }

  /** d: n hand-offs in a row, each tap closed at once; its summary, wall time and first error. */
  async handoffLoop(n) {
    const r = await this.inNs(HANDOFF, [VNET_HELPER, BRIDGE, String(n), '--close-each'], { check: false });
    const s = JSON.parse(r.stdout);
    const out = { n: s.n, ok: s.ok, failed: s.failed, seconds: +(r.ms / 1000).toFixed(2), p50_ms: s.p50_ms, p90_ms: s.p90_ms, max_ms: s.max_ms };
    const firstError = r.stderr.split('\n').find((l) => l.trim());
    if (firstError) out.first_error = firstError;
    return out;
  }

  async handoffStock(n) {
    const script = [
      `mount -t overlay overlay -o lowerdir=/etc,upperdir=${this.dir}/upper,workdir=${this.dir}/work /etc`,
      `mkdir -p /etc/qemu`,
      `echo 'allow ${BRIDGE}' > /etc/qemu/bridge.conf`,
      `exec ${HANDOFF} ${STOCK_HELPER} ${BRIDGE} ${n} --samples`,
    ].join(' && ');
    const r = await this.inNs('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script]);
    return JSON.parse(r.stdout).samples_ms;
  }
}

// ------------------------------------------------------------------ main

async function main() {
  const opts = options(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new Error('bench: run as root (it creates a network namespace and taps)');
  for (const f of [HANDOFF, VNET_HELPER, path.join(ROOT, 'dist/daemon/main.js')])
    if (!existsSync(f)) throw new Error(`bench: ${f} is missing; run \`make build build/handoff\` first`);
  if (!existsSync(STOCK_HELPER)) throw new Error(`bench: ${STOCK_HELPER} is missing (Debian package qemu-system-common)`);

  const b = new Bench(opts);
  await b.setup();
  await b.startVnetd();
  const pid = b.vnetdPid;
  const fig = { machine: { cpus: os.cpus().length, kernel: os.release(), node: process.version } };

  // c (first half): idle with no network
  process.stderr.write(`bench: vnetd idle, no network (${opts.settleS} s to settle, ${opts.idleS} s measured)\n`);
  fig.idle_no_network = await idleFigures(pid, opts.idleS, opts.settleS);

  // a. tap hand-off
  process.stderr.write('bench: tap hand-off\n');
  await b.cli(['up', NETWORK]);
  await b.handoffStock(opts.warmup);
  await b.handoffVnet(opts.warmup);
  const stock = [];
  const vnet = [];
  for (let r = 0; r < opts.rounds; r++) {
    const order = r % 2 === 0 ? ['stock', 'vnet'] : ['vnet', 'stock'];
    for (const which of order) {
      if (which === 'stock') stock.push(...(await b.handoffStock(opts.perRound)));
      else vnet.push(...(await b.handoffVnet(opts.perRound)));
    }
  }
  fig.handoff = { stock: summary(stock), vnet: summary(vnet) };
  fig.handoff.p50_ratio = +(fig.handoff.vnet.p50_ms / fig.handoff.stock.p50_ms).toFixed(3);
  fig.handoff.target_ratio = TARGET_RATIO;
  fig.handoff.target_met = fig.handoff.p50_ratio <= TARGET_RATIO;

  // d. back-to-back hand-offs, each tap closed at once
  if (opts.loop > 0) {
    process.stderr.write(`bench: ${opts.loop} back-to-back hand-offs, each tap closed at once\n`);
    fig.handoff_loop = await b.handoffLoop(opts.loop);
  }

  // a (on demand): the first hand-off on a down network brings it up
  const onDemand = [];
  for (let i = 0; i < opts.onDemand; i++) {
    await b.cli(['down', NETWORK]);
    onDemand.push(...(await b.handoffVnet(1)));
  }
  if (onDemand.length) fig.handoff.vnet_on_demand = summary(onDemand);

  // b. up / down
  process.stderr.write(`bench: vnet up/down x${opts.updown}\n`);
  await b.cli(['down', NETWORK]);
  const upBefore = b.loggedMs('network up').length;
  const downBefore = b.loggedMs('network down').length;
  const upWall = [];
  const downWall = [];
  const nsExec = [];
  for (let i = 0; i < opts.updown; i++) {
    upWall.push((await b.cli(['up', NETWORK])).ms);
    downWall.push((await b.cli(['down', NETWORK])).ms);
    // what `ip netns exec` alone adds to each CLI wall time
    nsExec.push((await b.inNs('true', [])).ms);
  }
  const upDaemon = b.loggedMs('network up').slice(upBefore);
  const downDaemon = b.loggedMs('network down').slice(downBefore);
  const r1 = (x) => (x === undefined ? null : +x.toFixed(1));
  fig.updown = {
    n: opts.updown,
    up_cli_ms: r1(median(upWall)),
    up_daemon_ms: r1(median(upDaemon)),
    down_cli_ms: r1(median(downWall)),
    down_daemon_ms: r1(median(downDaemon)),
    netns_exec_ms: r1(median(nsExec)),
  };

  // c (second half): idle with one network up
  process.stderr.write(`bench: vnetd idle, ${NETWORK} up (${opts.settleS} s to settle, ${opts.idleS} s measured)\n`);
  await b.cli(['up', NETWORK]);
  const dnsmasq = childrenOf(pid, 'dnsmasq');
  fig.idle_one_network = await idleFigures(pid, opts.idleS, opts.settleS, dnsmasq.slice(0, 1));
  await b.cli(['down', NETWORK]);

  await movedFigures(b, opts, fig);
  reportMoved(fig);
  report(fig, opts);
}

function report(fig, opts) {
  const h = fig.handoff;
  const row = (cells, w) => cells.map((c, i) => String(c).padEnd(w[i])).join('  ').trimEnd();
  const lines = [];
  lines.push(`tap hand-off on ${BRIDGE}, ${opts.rounds} interleaved rounds of ${opts.perRound} (ms)`);
  const w = [26, 6, 8, 8, 8, 8];
  lines.push(row(['helper', 'n', 'min', 'p50', 'p90', 'max'], w));
  for (const [name, s] of [
    ['qemu-bridge-helper (stock)', h.stock],
    ['vnet-bridge-helper', h.vnet],
    ...(h.vnet_on_demand ? [['vnet, first (on demand)', h.vnet_on_demand]] : []),
  ])
    lines.push(row([name, s.n, s.min_ms, s.p50_ms, s.p90_ms, s.max_ms], w));
  lines.push(`p50 ratio vnet/stock: ${h.p50_ratio} (target <= ${TARGET_RATIO}: ${h.target_met ? 'met' : 'NOT met'})`);
  const l = fig.handoff_loop;
  if (l) {
    lines.push(`${l.n} back-to-back hand-offs, each tap closed at once: ${l.ok} ok, ${l.failed} failed in ${l.seconds} s (p50 ${l.p50_ms} ms, p90 ${l.p90_ms} ms, max ${l.max_ms} ms)`);
    if (l.first_error) lines.push(`  first error: ${l.first_error}`);
  }
  lines.push('');
  const u = fig.updown;
  lines.push(`network ${NETWORK}, median of ${u.n} (ms)`);
  lines.push(row(['', 'CLI (wall)', 'daemon'], [12, 12, 8]));
  lines.push(row(['vnet up', u.up_cli_ms, u.up_daemon_ms], [12, 12, 8]));
  lines.push(row(['vnet down', u.down_cli_ms, u.down_daemon_ms], [12, 12, 8]));
  lines.push(`(CLI wall times include \`ip netns exec\`: ${u.netns_exec_ms} ms for \`ip netns exec NS true\`)`);
  lines.push('');
  lines.push(`vnetd idle: ${opts.idleS} s measured after ${opts.settleS} s to settle`);
  const iw = [18, 8, 8, 9, 12, 16];
  lines.push(row(['', 'RSS MB', 'threads', 'wakeups', 'dnsmasq MB', 'dnsmasq wakeups'], iw));
  for (const [name, s] of [
    ['no network', fig.idle_no_network],
    [`${NETWORK} up`, fig.idle_one_network],
  ])
    lines.push(row([name, s.rss_mb, s.threads, s.wakeups, s.dnsmasq_rss_mb ?? '-', s.dnsmasq_wakeups ?? '-'], iw));
  process.stdout.write(lines.join('\n') + '\n');
  process.stdout.write(JSON.stringify({ bench: 'vnet', ...fig }) + '\n');
}

// ------------------------------------------------------------------ d. long loops and figures moved out of the tests
//
// Each section is a self-contained function; a count of 0 skips it. The ones that need vnetd
// use the bench's (its `default` network); the others run in a namespace of their own.

const NAT_DRIVER = path.join(ROOT, 'test/support/drivers/nat-nft.mjs');
const DHCP_DRIVER = path.join(ROOT, 'test/support/drivers/dhcp-supervisor.mjs');
const LOAD_DRIVER = path.join(ROOT, 'test/support/drivers/load-handoffs.py');
const MOVED_DEFAULTS = { nftApplies: 20, dnsmasqStarts: 10, loadHandoffs: 200, handoffFdLoop: 1000, restarts: 50 };
const MOVED_OPTIONS = {
  '--nft-applies': 'nftApplies',
  '--dnsmasq-starts': 'dnsmasqStarts',
  '--load-handoffs': 'loadHandoffs',
  '--handoff-fd-loop': 'handoffFdLoop',
  '--restarts': 'restarts',
};

/** Delete namespace ns and whatever still runs in it. */
async function deleteNamespace(ns) {
  await terminate(new Set(await netnsPids(ns)));
  await run('ip', ['netns', 'del', ns], { check: false });
  made.extraNs.delete(ns);
}

/** fn(ns) in a namespace of its own (lo up), deleted afterwards with what runs in it. */
async function withNamespace(suffix, fn) {
  const ns = `vnbench-${process.pid}-${suffix}`;
  await run('ip', ['netns', 'add', ns]);
  made.extraNs.add(ns);
  try {
    await run('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
    return await fn(ns);
  } finally {
    await deleteNamespace(ns);
  }
}

async function until(what, fn, ms) {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`bench: timed out waiting for ${what}`);
    await sleep(50);
  }
}

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
  const { parseDefinition } = await import(path.join(ROOT, 'dist/config/definition.js'));
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
 * what a user would check: 15 rules, one dnsmasq, one bridge.
 */
async function restartLoopFigures(b, n) {
  await b.cli(['up', NETWORK]);
  const times = [];
  for (let i = 0; i < n; i++) {
    const old = b.vnetdPid;
    const t0 = process.hrtime.bigint();
    process.kill(old, i % 2 ? 'SIGKILL' : 'SIGTERM');
    await until('vnetd to exit', () => !alive(old), 10_000);
    await b.startVnetd();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const table = await b.inNs('nft', ['-j', 'list', 'table', 'inet', 'vnet'], { check: false });
  const rules = table.code === 0 ? JSON.parse(table.stdout).nftables.filter((o) => 'rule' in o).length : 0;
  const bridges = JSON.parse((await b.inNs('ip', ['-j', '-d', 'link', 'show', 'type', 'bridge'])).stdout || '[]').map((l) => l.ifname);
  const dnsmasq = childrenOf(b.vnetdPid, 'dnsmasq').length;
  return { n, restart: summary(times), rules, dnsmasq, bridges, consistent: rules === 15 && dnsmasq === 1 && bridges.join() === BRIDGE };
}

async function movedFigures(b, opts, fig) {
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

function reportMoved(fig) {
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
    lines.push(`${r.n} vnetd restarts with ${NETWORK} up: ${s(r.restart)}; then ${r.rules} rules, ${r.dnsmasq} dnsmasq, bridges [${r.bridges.join(', ')}]: ${r.consistent ? 'consistent' : 'NOT consistent'}`);
  }
  if (lines.length) process.stdout.write(`${lines.join('\n')}\n\n`);
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
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    await cleanup();
    process.exit(1);
  });
