/**
 * Forward chains of other firewalls that drop what they do not accept: Docker's FORWARD policy
 * (through iptables-nft), ufw's default forward policy, any other table's base forward chain with
 * policy drop (../firewall/foreign-drop.ts finds them in nft's listing), and FORWARD in
 * iptables-legacy's tables, which nft's listing does not show. A drop in another table wins over
 * vnet's accepts: guests get leases and reach nothing. With br_netfilter even traffic between
 * guests of one bridge passes these chains (br-netfilter.ts).
 */
import { readFile } from 'node:fs/promises';
import { forwardDrops, type ForwardDrop, type ForwardDropReport } from '../firewall/foreign-drop.js';
import { vnetTomlPath } from '../config/vnet-toml.js';
import { run } from '../sys/run.js';
import { forwards } from '../spec/spec.js';
import { couldNotRead, failure, isUnreadable, note, passed, reasonOf, type Finding, type Unreadable } from './finding.js';
import { legacyBinary, parseLegacyFilter, type LegacyFilter } from './legacy-iptables.js';
import type { Scope } from './scope.js';

export interface ForeignDropFacts {
  /** nft's ruleset, judged */
  nft: ForwardDropReport | Unreadable;
  /** iptables-legacy's filter table of each family that has one in this namespace */
  legacy: Array<LegacyFilter | (Unreadable & { family: 'ip' | 'ip6' })>;
}

const CHECK = 'foreign-drop';

function bridges(scope: Scope): string[] {
  return scope.networks.filter((n) => n.bridge.managed).map((n) => n.bridge.name);
}

function dockerFinding(d: ForwardDrop, report: ForwardDropReport, scope: Scope): Finding {
  const where = `table ${d.family} ${d.table}, chain ${d.chain}`;
  const toml = vnetTomlPath(scope.paths.configDir);
  if (scope.settings.dockerCompat && report.dockerUser) return note(CHECK, `Docker's ${where} drops forwarded traffic; vnet keeps its accepts in DOCKER-USER (docker-compat = true)`);
  if (scope.settings.dockerCompat)
    return failure(
      CHECK,
      `Docker's ${where} drops forwarded traffic and there is no DOCKER-USER chain for vnet's accepts (docker-compat = true needs Docker's iptables backend)`,
      `accept vnet's bridges in that chain yourself: ${bridges(scope).map((b) => `sudo nft insert rule ${d.family} ${d.table} ${d.chain} iifname ${b} accept; sudo nft insert rule ${d.family} ${d.table} ${d.chain} oifname ${b} ct state established,related accept`).join('; ')}`,
    );
  return failure(
    CHECK,
    `Docker's ${where} has policy drop: guests get leases but their traffic is dropped there, whatever vnet accepts`,
    `echo 'docker-compat = true' | sudo tee -a ${toml} && sudo systemctl restart vnetd   # vnet then keeps its accepts in Docker's DOCKER-USER chain`,
  );
}

function ufwFinding(d: ForwardDrop, scope: Scope): Finding {
  const routed = scope.networks.filter((n) => n.forward.mode === 'route' || n.forward.mode === 'open').map((n) => n.bridge.name);
  const allow = [...bridges(scope).map((b) => `sudo ufw route allow in on ${b}`), ...routed.map((b) => `sudo ufw route allow out on ${b}`)];
  return failure(
    CHECK,
    `ufw's default forward policy drops forwarded traffic (table ${d.family} ${d.table}, chain ${d.chain}): guests get leases but reach nothing`,
    `${allow.join(' && ') || 'sudo ufw route allow in on BRIDGE'}   # or DEFAULT_FORWARD_POLICY="ACCEPT" in /etc/default/ufw, then sudo ufw reload`,
  );
}

function otherFinding(d: ForwardDrop, scope: Scope): Finding {
  const accepts = bridges(scope).map((b) => `sudo nft insert rule ${d.family} ${d.table} ${d.chain} iifname ${b} accept; sudo nft insert rule ${d.family} ${d.table} ${d.chain} oifname ${b} ct state established,related accept`);
  return failure(
    CHECK,
    `table ${d.family} ${d.table}, chain ${d.chain} (not vnet's) has policy drop on forwarded traffic: guests' traffic dies there whatever vnet accepts`,
    `accept vnet's bridges in that table (with the tool that owns it): ${accepts.join('; ') || `sudo nft insert rule ${d.family} ${d.table} ${d.chain} iifname BRIDGE accept`}`,
  );
}

function legacyFindings(l: LegacyFilter, scope: Scope): Finding[] {
  const bin = legacyBinary(l.family);
  const out: Finding[] = [];
  const accepts = bridges(scope).map((b) => `sudo ${bin} -I FORWARD -i ${b} -j ACCEPT; sudo ${bin} -I FORWARD -o ${b} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`);
  if (l.forwardPolicy === 'DROP')
    out.push(
      failure(
        CHECK,
        `${bin}'s FORWARD chain has policy DROP: guests' traffic is dropped there, and \`nft list ruleset\` does not show it (legacy x_tables)`,
        `${accepts.join('; ') || `sudo ${bin} -I FORWARD -i BRIDGE -j ACCEPT`}   # or, if nothing needs that policy: sudo ${bin} -P FORWARD ACCEPT`,
      ),
    );
  if (l.forwardDrops.length > 0)
    out.push(
      failure(
        CHECK,
        `${bin}'s FORWARD chain drops or rejects with ${l.forwardDrops.length} rule${l.forwardDrops.length > 1 ? 's' : ''} nft cannot see (${l.forwardDrops.slice(0, 3).join('; ')}): check that none matches vnet's guests`,
        `sudo ${bin} -S FORWARD   # delete a rule that matches vnet's bridges with: sudo ${bin} -D FORWARD ...`,
      ),
    );
  if (out.length === 0 && l.rules > 0) out.push(note(CHECK, `${bin} holds ${l.rules} rule${l.rules > 1 ? 's' : ''} that \`nft list ruleset\` does not show; none drops forwarded traffic`));
  return out;
}

export function judgeForeignDrops(f: ForeignDropFacts, scope: Scope): Finding[] {
  const out: Finding[] = [];
  // only networks whose guests' traffic crosses forward hooks (br_netfilter makes every bridged frame do so: br-netfilter.ts)
  const anyForwards = scope.networks.some(forwards);
  if (isUnreadable(f.nft)) out.push(couldNotRead(CHECK, 'the nftables ruleset', f.nft.unreadable));
  else
    for (const d of f.nft.drops) {
      if (!anyForwards) {
        out.push(note(CHECK, `table ${d.family} ${d.table}, chain ${d.chain} drops forwarded traffic; no network here forwards (see br-netfilter for traffic between guests)`));
        continue;
      }
      out.push(d.owner === 'docker' ? dockerFinding(d, f.nft, scope) : d.owner === 'ufw' ? ufwFinding(d, scope) : otherFinding(d, scope));
    }
  for (const l of f.legacy) {
    if (isUnreadable(l)) out.push(couldNotRead(CHECK, `${legacyBinary(l.family)}'s filter table`, l.unreadable));
    else out.push(...legacyFindings(l, scope));
  }
  return out.length ? out : [passed(CHECK)];
}

/** The legacy filter table of a family, when this namespace has one (/proc/net/ip{,6}_tables_names lists it). */
async function legacyOf(family: 'ip' | 'ip6', proc: string): Promise<ForeignDropFacts['legacy'][number] | undefined> {
  let names: string;
  try {
    names = await readFile(`${proc}/net/${family}_tables_names`, 'utf8');
  } catch (err) {
    // no file: the legacy module is not loaded, so there are no legacy tables
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return { family, unreadable: reasonOf(err) };
  }
  // no table yet: do not run iptables-legacy, which would create one
  if (!names.split('\n').includes('filter')) return undefined;
  try {
    const r = await run(legacyBinary(family), ['-w', '-t', 'filter', '-S'], { timeoutMs: 10_000 });
    if (r.exitCode !== 0) return { family, unreadable: r.stderr.trim() || `exit code ${r.exitCode}` };
    return parseLegacyFilter(family, r.stdout);
  } catch (err) {
    return { family, unreadable: `the kernel has legacy iptables tables but ${legacyBinary(family)} could not run (${(err as Error).message})` };
  }
}

export async function gatherForeignDrops(opts: { nft?: string; proc?: string } = {}): Promise<ForeignDropFacts> {
  let nft: ForeignDropFacts['nft'];
  try {
    const r = await run(opts.nft ?? 'nft', ['-j', 'list', 'ruleset'], { timeoutMs: 10_000 });
    nft = r.exitCode === 0 ? forwardDrops(JSON.parse(r.stdout)) : { unreadable: `nft -j list ruleset: ${r.stderr.trim() || `exit code ${r.exitCode}`}` };
  } catch (err) {
    nft = { unreadable: (err as Error).message };
  }
  const legacy = (await Promise.all([legacyOf('ip', opts.proc ?? '/proc'), legacyOf('ip6', opts.proc ?? '/proc')])).filter((x) => x !== undefined);
  return { nft, legacy };
}
