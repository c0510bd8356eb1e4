/**
 * Forward chains of other tables that drop what they do not accept (Docker's FORWARD policy
 * through iptables-nft, ufw's default forward policy): guest traffic dies there whatever vnet's
 * table accepts. For `vnet doctor`: findForwardDrops() reads the ruleset (`nft -j list ruleset`),
 * forwardDrops() judges a listing (pure). Rules of iptables-legacy are not in nft's listing.
 */
import { run } from '../sys/run.js';
import { TABLE } from './layout.js';

export interface ForwardDrop {
  family: string;
  table: string;
  chain: string;
  /** who made it, by the chains beside it in its table */
  owner: 'docker' | 'ufw' | 'unknown';
}

export interface ForwardDropReport {
  drops: ForwardDrop[];
  /** Docker's DOCKER-USER chain exists (table ip filter): `docker-compat = true` can use it */
  dockerUser: boolean;
}

interface ChainObj {
  family?: unknown;
  table?: unknown;
  name?: unknown;
  hook?: unknown;
  policy?: unknown;
}

function chainsOf(listing: unknown): ChainObj[] {
  const items = (listing as { nftables?: unknown } | null)?.nftables;
  if (!Array.isArray(items)) return [];
  return items.flatMap((i) => {
    const c = (i as { chain?: ChainObj } | null)?.chain;
    return c && typeof c === 'object' ? [c] : [];
  });
}

/** Base chains hooked at forward with policy drop, in tables other than vnet's own. */
export function forwardDrops(listing: unknown): ForwardDropReport {
  const chains = chainsOf(listing);
  const namesIn = (family: unknown, table: unknown) => chains.filter((c) => c.family === family && c.table === table).map((c) => String(c.name));
  const drops: ForwardDrop[] = [];
  for (const c of chains) {
    if (c.hook !== 'forward' || c.policy !== 'drop') continue;
    if (c.family === TABLE.family && c.table === TABLE.name) continue;
    const beside = namesIn(c.family, c.table);
    const owner = beside.some((n) => n.startsWith('DOCKER')) ? 'docker' : beside.some((n) => n.startsWith('ufw-') || n.startsWith('ufw6-')) ? 'ufw' : 'unknown';
    drops.push({ family: String(c.family), table: String(c.table), chain: String(c.name), owner });
  }
  const dockerUser = chains.some((c) => c.family === 'ip' && c.table === 'filter' && c.name === 'DOCKER-USER');
  return { drops, dockerUser };
}

/** The same, of the ruleset as it is now. */
export async function findForwardDrops(nft = 'nft'): Promise<ForwardDropReport> {
  const r = await run(nft, ['-j', 'list', 'ruleset'], { timeoutMs: 10_000 });
  if (r.exitCode !== 0) throw new Error(`${nft} -j list ruleset failed: ${r.stderr.trim() || `exit code ${r.exitCode}`}`);
  return forwardDrops(JSON.parse(r.stdout));
}
