/**
 * vnet's rules in Docker's DOCKER-USER chain (table `filter`, written through iptables), as
 * iptables prints them (`iptables -S`), and the reading of that listing. Pure.
 *
 * Docker sets the FORWARD policy of its filter table to DROP, and a drop in another table wins
 * over any accept in vnet's own. DOCKER-USER is the chain Docker leaves to the admin, jumped to
 * first from FORWARD; its ACCEPT ends that table's say (vnet's own table still decides: no
 * forged sources, NAT). Per bridge BR, by forward mode:
 *   nat       -i BR -o docker0 RETURN, -i BR -o br-+ RETURN   traffic into Docker's own networks is
 *                                                             Docker's to judge (unpublished ports stay shut)
 *             -i BR ACCEPT                                    guests out, and among themselves
 *             -o BR ctstate RELATED,ESTABLISHED,DNAT ACCEPT  replies, and vnet's port forwards; nothing else new in
 *   route     the same, but -o BR ACCEPT                      routed both ways
 *   isolated  -i BR -o BR ACCEPT                              guests among themselves only
 * Each rule carries the comment "vnet:BR:MODE": what marks it vnet's, so vnet lists and removes
 * exactly its own rules and never the admin's.
 */
import { ifnameProblem } from '../config/names.js';
import type { ForwardMode } from '../spec/spec.js';

export const DOCKER_USER = 'DOCKER-USER';
const MODES = ['nat', 'route', 'isolated'] as const;
type RuleMode = (typeof MODES)[number];

export function tag(bridge: string, mode: RuleMode): string {
  return `vnet:${bridge}:${mode}`;
}

/** The owner of a rule by its comment, if it is one of vnet's. */
export function parseTag(comment: string): { bridge: string; mode: RuleMode } | undefined {
  const m = /^vnet:([^:]+):([a-z]+)$/.exec(comment);
  if (!m || ifnameProblem(m[1]) || !(MODES as readonly string[]).includes(m[2]!)) return undefined;
  return { bridge: m[1]!, mode: m[2] as RuleMode };
}

/** The rule specs (what follows `-A DOCKER-USER`) for a bridge, in order; none for open/bridge. */
export function dockerUserRules(bridge: string, mode: ForwardMode): string[][] {
  if (mode !== 'nat' && mode !== 'route' && mode !== 'isolated') return [];
  const problem = ifnameProblem(bridge);
  if (problem) throw new Error(`bridge name ${JSON.stringify(bridge)} ${problem}`);
  const c = ['-m', 'comment', '--comment', tag(bridge, mode)];
  if (mode === 'isolated') return [['-i', bridge, '-o', bridge, ...c, '-j', 'ACCEPT']];
  return [
    ['-i', bridge, '-o', 'docker0', ...c, '-j', 'RETURN'],
    ['-i', bridge, '-o', 'br-+', ...c, '-j', 'RETURN'],
    ['-i', bridge, ...c, '-j', 'ACCEPT'],
    mode === 'nat' ? ['-o', bridge, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED,DNAT', ...c, '-j', 'ACCEPT'] : ['-o', bridge, ...c, '-j', 'ACCEPT'],
  ];
}

/** Split one line of `iptables -S` into its words (iptables quotes words with spaces, escaping `"` and `\`). */
export function splitRule(line: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < line.length) {
    while (line[i] === ' ') i++;
    if (i >= line.length) break;
    let word = '';
    if (line[i] === '"') {
      i++;
      while (i < line.length && line[i] !== '"') {
        if (line[i] === '\\' && i + 1 < line.length) i++;
        word += line[i++];
      }
      i++;
    } else {
      while (i < line.length && line[i] !== ' ') word += line[i++];
    }
    out.push(word);
  }
  return out;
}

export interface DockerUserChain {
  /** the chain exists (Docker made it) */
  exists: boolean;
  /** its rules in order, each as the words after `-A DOCKER-USER` */
  rules: string[][];
}

/** DOCKER-USER in the listing of the whole filter table (`iptables -t filter -S`). */
export function parseFilterListing(text: string): DockerUserChain {
  const chain: DockerUserChain = { exists: false, rules: [] };
  for (const line of text.split('\n')) {
    const w = splitRule(line.trim());
    if (w[1] !== DOCKER_USER) continue;
    if (w[0] === '-N') chain.exists = true;
    else if (w[0] === '-A') chain.rules.push(w.slice(2));
  }
  return chain;
}

/** The comment of a rule spec, if it has one. */
function commentOf(rule: string[]): string | undefined {
  const i = rule.indexOf('--comment');
  return i >= 0 ? rule[i + 1] : undefined;
}

/** vnet's rules for `bridge`, in chain order. */
export function rulesOf(chain: DockerUserChain, bridge: string): string[][] {
  return chain.rules.filter((r) => parseTag(commentOf(r) ?? '')?.bridge === bridge);
}

/** The bridges whose rules are all there, in order, for one forward mode: let through. */
export function boundBridges(chain: DockerUserChain): Set<string> {
  const byBridge = new Map<string, { modes: Set<RuleMode>; rules: string[] }>();
  for (const r of chain.rules) {
    const t = parseTag(commentOf(r) ?? '');
    if (!t) continue;
    const entry = byBridge.get(t.bridge) ?? { modes: new Set(), rules: [] };
    entry.modes.add(t.mode);
    entry.rules.push(r.join(' '));
    byBridge.set(t.bridge, entry);
  }
  const out = new Set<string>();
  for (const [bridge, { modes, rules }] of byBridge) {
    const [mode] = modes;
    if (modes.size !== 1 || !mode) continue;
    const want = dockerUserRules(bridge, mode).map((r) => r.join(' '));
    if (want.length === rules.length && want.every((w, i) => w === rules[i])) out.add(bridge);
  }
  return out;
}

/**
 * Where vnet's rules go (1-based, for `iptables -I`): at the end, so the admin's own rules come
 * first, but before an unconditional `-j RETURN` closing the chain (Docker before 28 put one there).
 */
export function insertPosition(chain: DockerUserChain): number {
  const last = chain.rules[chain.rules.length - 1];
  if (last && last.length === 2 && last[0] === '-j' && last[1] === 'RETURN') return chain.rules.length;
  return chain.rules.length + 1;
}
