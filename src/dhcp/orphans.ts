/**
 * dnsmasq left running by a vnetd that was killed (SIGKILL leaves its children): found
 * by its exact command line (a --conf-file in vnet's own dnsmasq folder, where only
 * vnet writes) and its executable name, never by a pid file or a bare process name.
 * vnetd looks once, when it starts: orphans can only come from an earlier vnetd.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const CONF_FILE = '--conf-file=';

/** pids of the dnsmasq servers whose --conf-file is a file directly in `confDir` */
function findDnsmasqIn(confDir: string): number[] {
  const dir = path.resolve(confDir);
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (path.basename(argv[0] ?? '') !== 'dnsmasq' || argv.includes('--test')) continue;
      const conf = argv.find((a) => a.startsWith(CONF_FILE))?.slice(CONF_FILE.length);
      if (conf !== undefined && path.isAbsolute(conf) && path.dirname(path.resolve(conf)) === dir) out.push(Number(entry));
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

/**
 * SIGKILL every dnsmasq whose config is in `confDir` (`${runtimeDir}/dnsmasq`) and wait
 * until they are gone. One scan of /proc. Returns their pids.
 */
export async function reapOrphans(confDir: string, timeoutMs = 3000): Promise<number[]> {
  const pids = findDnsmasqIn(confDir);
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
