/**
 * Throwaway network namespaces for integration tests. Everything a test creates is
 * registered here and removed by cleanupAll(), which test files call in afterAll
 * (and which also runs on process exit), so a failing test leaves nothing behind.
 * Nothing here touches the root namespace except creating/deleting namespaces.
 */
import { execa, type Options } from 'execa';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const created = new Set<string>();
const pids = new Set<number>();
const dirs = new Set<string>();
let counter = 0;

export function uniqueName(prefix: string): string {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}`;
}

/** No stdin unless the caller feeds some. */
function withStdin(opts: Options): Options {
  return ('input' in opts || 'inputFile' in opts || 'stdin' in opts ? opts : { ...opts, stdin: 'ignore' }) as Options;
}

export class Netns {
  constructor(readonly name: string) {}

  /** Run a command inside the namespace and return its stdout. Throws on non-zero exit. */
  async run(cmd: string, args: string[] = [], opts: Options = {}): Promise<string> {
    const r = await execa('ip', ['netns', 'exec', this.name, cmd, ...args], withStdin(opts));
    return String(r.stdout ?? '');
  }

  /** Like run, but never throws: returns exit code and output. */
  async tryRun(cmd: string, args: string[] = [], opts: Options = {}) {
    const r = await execa('ip', ['netns', 'exec', this.name, cmd, ...args], { ...withStdin(opts), reject: false });
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
  }

  async links(): Promise<Array<{ ifname: string; master?: string; operstate: string; flags: string[]; linkinfo?: { info_kind?: string } }>> {
    return JSON.parse(await this.run('ip', ['-d', '-j', 'link', 'show']));
  }

  /** the taps (tun links) in this namespace */
  async taps(): Promise<string[]> {
    return (await this.links()).filter((l) => l.linkinfo?.info_kind === 'tun').map((l) => l.ifname);
  }

  async nftRuleset(): Promise<string> {
    return this.run('nft', ['-j', 'list', 'ruleset']);
  }
}

export async function createNetns(prefix = 'vt'): Promise<Netns> {
  const name = uniqueName(prefix);
  await execa('ip', ['netns', 'add', name]);
  created.add(name);
  const ns = new Netns(name);
  await ns.run('ip', ['link', 'set', 'lo', 'up']);
  return ns;
}

/** Remember a pid (a daemon, QEMU, ...) to SIGKILL at cleanup if it is still there. */
export function trackPid(pid: number | undefined): void {
  if (pid) pids.add(pid);
}

export function untrackPid(pid: number | undefined): void {
  if (pid) pids.delete(pid);
}

/** SIGTERM a child this test started (by its pid), wait for it to end, and stop tracking it. */
export async function stopChild(proc: Promise<unknown> & { pid?: number | undefined }): Promise<void> {
  const pid = proc.pid;
  if (!pid) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    /* gone */
  }
  await proc;
  untrackPid(pid);
}

export function tempDir(prefix = 'vnet-test-'): string {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.add(d);
  return d;
}

export async function deleteNetns(ns: Netns): Promise<void> {
  await execa('ip', ['netns', 'del', ns.name], { reject: false });
  created.delete(ns.name);
}

/** pids of processes one of whose arguments is exactly `arg` (e.g. `--conf-file=PATH`); a scan of its own, independent of vnet's */
export function pidsWithArg(arg: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').includes(arg)) out.push(Number(entry));
    } catch {
      /* gone */
    }
  }
  return out;
}

/**
 * Does a unix stream socket listen at `sock` (in `ns`, or the test runner's namespace)? The
 * file appears at bind(), before listen(): a connect in between is refused, so "the file
 * exists" is no readiness check for a socket someone else creates.
 */
export async function unixListening(sock: string, ns?: Netns): Promise<boolean> {
  const r = ns ? await ns.tryRun('ss', ['-xlnH']) : await execa('ss', ['-xlnH'], { reject: false, stdin: 'ignore' });
  return String(r.stdout ?? '')
    .split('\n')
    .some((l) => {
      const f = l.trim().split(/\s+/);
      return f[1] === 'LISTEN' && f[4] === sock;
    });
}

/** Poll `fn` until it is true; throw naming `what` after `ms`. */
export async function waitFor(what: string, fn: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** pids of processes whose command line or environment names one of our temp dirs */
function processesUsing(dirList: string[]): number[] {
  if (!dirList.length) return [];
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      // its command line (dnsmasq --conf-file=...) or environment (a vnetd that `vnet up` started)
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      const environ = readFileSync(`/proc/${entry}/environ`, 'utf8');
      if (dirList.some((d) => cmdline.includes(d) || environ.includes(d))) out.push(Number(entry));
    } catch {
      /* gone */
    }
  }
  return out;
}

export async function cleanupAll(): Promise<void> {
  // children of a SIGKILLed daemon (dnsmasq) outlive it: find them by our temp dirs
  for (const pid of [...pids, ...processesUsing([...dirs])]) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  pids.clear();
  for (const name of created) await execa('ip', ['netns', 'del', name], { reject: false });
  created.clear();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
}

process.on('exit', () => {
  for (const pid of [...pids, ...processesUsing([...dirs])]) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  for (const name of created) {
    try {
      execFileSync('ip', ['netns', 'del', name]);
    } catch {
      /* best effort */
    }
  }
});

/** Create a veth pair: `a` in nsA, `b` in nsB (both up). */
export async function veth(nsA: Netns, a: string, nsB: Netns, b: string): Promise<void> {
  await nsA.run('ip', ['link', 'add', a, 'type', 'veth', 'peer', 'name', b, 'netns', nsB.name]);
  await nsA.run('ip', ['link', 'set', a, 'up']);
  await nsB.run('ip', ['link', 'set', b, 'up']);
}

export interface Topology {
  host: Netns;
  wan: Netns;
}

/**
 * host <-> wan: the "host" namespace (where vnetd runs) has uplink `up0` 198.51.100.2/24
 * with a default route via 198.51.100.1, the "internet" in the "wan" namespace.
 */
export async function hostAndWan(): Promise<Topology> {
  const host = await createNetns('vh');
  const wan = await createNetns('vw');
  await veth(host, 'up0', wan, 'wan0');
  await wan.run('ip', ['addr', 'add', '198.51.100.1/24', 'dev', 'wan0']);
  await host.run('ip', ['addr', 'add', '198.51.100.2/24', 'dev', 'up0']);
  await host.run('ip', ['route', 'add', 'default', 'via', '198.51.100.1']);
  // a new namespace copies ip_forward from the root one: start from the kernel default
  await host.run('sysctl', ['-qw', 'net.ipv4.ip_forward=0']);
  return { host, wan };
}
