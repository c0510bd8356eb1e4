/**
 * A dnsmasq left running by a vnetd that was killed (SIGKILL leaves its children):
 * found by its exact command line (our --conf-file path, which only vnet writes) and
 * its executable name, never by a pid file or a bare process name.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

export function findDnsmasqFor(confPath: string): number[] {
  const want = `--conf-file=${confPath}`;
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (path.basename(argv[0] ?? '') === 'dnsmasq' && argv.includes(want) && !argv.includes('--test')) out.push(Number(entry));
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

/** SIGKILL the orphans of `confPath` and wait until they are gone. Returns their pids. */
export async function reapOrphans(confPath: string, timeoutMs = 3000): Promise<number[]> {
  const pids = findDnsmasqFor(confPath);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  const end = Date.now() + timeoutMs;
  while (pids.some(alive) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  return pids;
}

function alive(pid: number): boolean {
  try {
    // a zombie still has /proc/PID, but its cmdline is empty
    return readFileSync(`/proc/${pid}/cmdline`).length > 0;
  } catch {
    return false;
  }
}
