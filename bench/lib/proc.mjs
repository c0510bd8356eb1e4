/**
 * Processes, namespaces and /proc for the bench: what it started (killed by pid at the end, also
 * on failure or a signal), commands run to their end, statistics.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';

/** What the bench made: removed by cleanup(), whatever happened. */
export const made = { ns: undefined, dir: undefined, pids: new Set(), vnetd: undefined, extraNs: new Set(), onCleanup: [] };

export async function cleanup() {
  for (const fn of made.onCleanup.splice(0)) await fn().catch((err) => process.stderr.write(`bench: cleanup: ${err.message}\n`));
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
export async function terminate(pids) {
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
export async function netnsPids(ns) {
  const r = await run('ip', ['netns', 'pids', ns], { check: false });
  return r.code === 0 ? r.stdout.split(/\s+/).filter((p) => /^\d+$/.test(p)).map(Number) : [];
}

/** Delete namespace ns and whatever still runs in it. */
export async function deleteNamespace(ns) {
  await terminate(new Set(await netnsPids(ns)));
  await run('ip', ['netns', 'del', ns], { check: false });
  made.extraNs.delete(ns);
}

/** A namespace of our own (lo up), deleted at cleanup with what runs in it. */
export async function addNamespace(ns) {
  await run('ip', ['netns', 'add', ns]);
  made.extraNs.add(ns);
  await run('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
  return ns;
}

/** fn(ns) in a namespace of its own (lo up), deleted afterwards with what runs in it. */
export async function withNamespace(suffix, fn) {
  const ns = await addNamespace(`vnbench-${process.pid}-${suffix}`);
  try {
    return await fn(ns);
  } finally {
    await deleteNamespace(ns);
  }
}

export function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Run a command to its end; resolves {code, stdout, stderr, ms}. Rejects on non-zero exit unless check is false. */
export function run(cmd, args, { env, check = true, input } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { env: env ?? process.env, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    made.pids.add(child.pid);
    if (input !== undefined) child.stdin.end(input);
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

/** A long-running child, killed at cleanup; its output collected in .out. */
export function start(cmd, args, { env, stdin = 'ignore' } = {}) {
  const child = spawn(cmd, args, { env: env ?? process.env, stdio: [stdin, 'pipe', 'pipe'] });
  made.pids.add(child.pid);
  child.out = '';
  child.stdout.on('data', (d) => (child.out += d));
  child.stderr.on('data', (d) => (child.out += d));
  child.done = new Promise((r) => child.on('close', (code) => (made.pids.delete(child.pid), r(code))));
  return child;
}

export async function until(what, fn, ms, every = 50) {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`bench: timed out waiting for ${what}`);
    await sleep(every);
  }
}

export const now = () => Number(process.hrtime.bigint()) / 1e6;

// ------------------------------------------------------------------ statistics

export function pct(sorted, p) {
  return sorted[Math.max(0, Math.ceil(sorted.length * p) - 1)];
}

export function summary(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const r = (x) => +x.toFixed(3);
  return { n: s.length, min_ms: r(s[0]), p50_ms: r(pct(s, 0.5)), p90_ms: r(pct(s, 0.9)), max_ms: r(s[s.length - 1]) };
}

export const median = (xs) => (xs.length ? pct([...xs].sort((a, b) => a - b), 0.5) : undefined);
export const r1 = (x) => (x === undefined || x === null || Number.isNaN(x) ? null : +x.toFixed(1));
export const r2 = (x) => (x === undefined || x === null || Number.isNaN(x) ? null : +x.toFixed(2));
export const ratio = (a, b) => (a && b ? +(a / b).toFixed(2) : null);

// ------------------------------------------------------------------ /proc

export function procStatus(pid) {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (k) => Number(new RegExp(`^${k}:\\s*(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  return { rssKb: field('VmRSS'), threads: field('Threads') };
}

/** RSS in MiB; 0 for a process that is gone. */
export function rssMb(pid) {
  try {
    return +(procStatus(pid).rssKb / 1024).toFixed(1);
  } catch {
    return 0;
  }
}

/** Context switches (voluntary + involuntary) of every thread of pid, by thread id, with its name. */
export function threadSwitches(pid) {
  const out = new Map();
  let tids = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const text = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      let n = 0;
      for (const m of text.matchAll(/^(?:non)?voluntary_ctxt_switches:\s*(\d+)/gm)) n += Number(m[1]);
      out.set(tid, { name: /^Name:\s*(.*)$/m.exec(text)?.[1] ?? '?', n });
    } catch {
      /* thread gone */
    }
  }
  return out;
}

/** Context switches summed over every thread of pid. */
export function wakeups(pid) {
  let total = 0;
  for (const t of threadSwitches(pid).values()) total += t.n;
  return total;
}

/** Per thread name, the switches between two threadSwitches() snapshots. */
export function switchesByName(before, after) {
  const out = {};
  for (const [tid, a] of after) out[a.name] = (out[a.name] ?? 0) + a.n - (before.get(tid)?.n ?? 0);
  return out;
}

function statOf(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return { comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), ppid: Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) };
}

export function childrenOf(ppid, comm) {
  const out = [];
  for (const f of readdirSync('/proc')) {
    if (!/^\d+$/.test(f)) continue;
    try {
      const s = statOf(f);
      if (s.ppid === ppid && (comm === undefined || s.comm === comm)) out.push(Number(f));
    } catch {
      /* raced */
    }
  }
  return out;
}

export function commOf(pid) {
  try {
    return statOf(pid).comm;
  } catch {
    return undefined;
  }
}
