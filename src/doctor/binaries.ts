/**
 * The programs vnetd runs: nft (its table), dnsmasq (DHCP and DNS of each network) and, with
 * docker-compat, iptables (Docker's DOCKER-USER chain). vnetd finds them on its PATH: the one `vnet
 * up` was run with as root, or systemd's for the unit (which has the sbin folders). As root doctor
 * searches its own PATH, as vnetd started by `vnet up` would; as a user, also the sbin folders.
 */
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import path from 'node:path';
import { failure, passed, type Finding } from './finding.js';
import type { Scope } from './scope.js';

export interface BinariesFacts {
  /** program → where it was found, or undefined */
  found: Record<string, string | undefined>;
  /** the folders searched */
  searched: string[];
}

const CHECK = 'programs';

const PACKAGES: Record<string, { why: string; debian: string; fedora: string }> = {
  nft: { why: "vnetd's rules (NAT, forwarding) are written with it", debian: 'nftables', fedora: 'nftables' },
  dnsmasq: { why: 'each network\'s DHCP and DNS server', debian: 'dnsmasq-base', fedora: 'dnsmasq' },
  iptables: { why: 'docker-compat = true writes vnet\'s accepts into Docker\'s DOCKER-USER chain with it', debian: 'iptables', fedora: 'iptables-nft' },
};

export function wanted(scope: Scope): string[] {
  return ['nft', 'dnsmasq', ...(scope.settings.dockerCompat ? ['iptables'] : [])];
}

export function judgeBinaries(f: BinariesFacts, scope: Scope): Finding[] {
  const out: Finding[] = [];
  for (const name of wanted(scope)) {
    if (f.found[name] !== undefined) continue;
    const p = PACKAGES[name]!;
    out.push(failure(CHECK, `${name} is not installed (not found in ${f.searched.join(':')}): ${p.why}`, `sudo apt install ${p.debian}   # Fedora: sudo dnf install ${p.fedora}`));
  }
  return out.length ? out : [passed(CHECK)];
}

/** The first executable regular file named `name` in `dirs`. */
export async function which(name: string, dirs: readonly string[]): Promise<string | undefined> {
  for (const dir of dirs) {
    const file = path.join(dir, name);
    try {
      if ((await stat(file)).isFile()) {
        await access(file, constants.X_OK);
        return file;
      }
    } catch {
      /* not here */
    }
  }
  return undefined;
}

export function searchPath(env: NodeJS.ProcessEnv = process.env, root = process.geteuid?.() === 0): string[] {
  const own = (env.PATH ?? '').split(':').filter((d) => d !== '' && path.isAbsolute(d));
  return root ? own : [...new Set([...own, '/usr/local/sbin', '/usr/sbin', '/sbin'])];
}

export async function gatherBinaries(scope: Scope, dirs = searchPath()): Promise<BinariesFacts> {
  const found: Record<string, string | undefined> = {};
  for (const name of wanted(scope)) found[name] = await which(name, dirs);
  return { found, searched: dirs };
}
