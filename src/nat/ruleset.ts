/**
 * The nftables ruleset vnet owns, built as typed `nft -j` JSON (never rule strings).
 * Pure: no I/O. One call gives one atomic transaction that replaces the `inet vnet`
 * table and touches nothing else. The rules follow libvirt's NAT network logic
 * (see shared/reference/anchors.md); IPv4 only.
 */
import ipaddr from 'ipaddr.js';

/** The one table vnet owns. */
export const TABLE = { family: 'inet', name: 'vnet' } as const;

export interface NatNetwork {
  /** bridge interface name, already validated ("virbr0") */
  bridge: string;
  /** IPv4 subnet in CIDR form with the network address ("192.168.122.0/24") */
  cidr: string;
  /** host address on the bridge ("192.168.122.1"); must lie inside cidr */
  address: string;
}

export interface TableRef {
  family: typeof TABLE.family;
  name: string;
}

export type MetaKey = 'iifname' | 'oifname' | 'l4proto';
export interface MetaExpr {
  meta: { key: MetaKey };
}
export interface PayloadExpr {
  payload: { protocol: 'ip' | 'tcp' | 'udp'; field: 'saddr' | 'daddr' | 'dport' };
}
export interface CtExpr {
  ct: { key: 'state' };
}
export interface PrefixExpr {
  prefix: { addr: string; len: number };
}

export interface Match {
  match: {
    op: '==' | '!=' | 'in';
    left: MetaExpr | PayloadExpr | CtExpr;
    right: string | number | string[] | PrefixExpr;
  };
}

export type Statement =
  | Match
  | { accept: null }
  | { return: null }
  | { reject: null }
  | { masquerade: null | { port: { range: [number, number] } } };

export type ChainName = 'forward' | 'postrouting' | 'input';

export interface ChainSpec {
  family: typeof TABLE.family;
  table: string;
  name: ChainName;
  type: 'filter' | 'nat';
  hook: 'forward' | 'postrouting' | 'input';
  prio: number;
  policy: 'accept';
}

export interface RuleSpec {
  family: typeof TABLE.family;
  table: string;
  chain: ChainName;
  expr: Statement[];
}

export type NftCommand =
  | { add: { table: TableRef } }
  | { delete: { table: TableRef } }
  | { add: { chain: ChainSpec } }
  | { add: { rule: RuleSpec } };

export interface NftCommands {
  nftables: NftCommand[];
}

export class RulesetError extends Error {
  override name = 'RulesetError';
}

/** Chains in the order they are created; every policy is accept: vnet never drops traffic that is not its own. */
const CHAINS: ReadonlyArray<Omit<ChainSpec, 'family' | 'table'>> = [
  { name: 'forward', type: 'filter', hook: 'forward', prio: 0, policy: 'accept' },
  { name: 'postrouting', type: 'nat', hook: 'postrouting', prio: 100, policy: 'accept' },
  { name: 'input', type: 'filter', hook: 'input', prio: 0, policy: 'accept' },
];

/** Source ports masquerade may pick for TCP/UDP, as libvirt does: never a privileged one. */
const MASQ_PORTS: [number, number] = [1024, 65535];

const tableRef = (): TableRef => ({ family: TABLE.family, name: TABLE.name });

// ---- expression helpers: every name and address goes in as a JSON value ----
const meta = (key: MetaKey): MetaExpr => ({ meta: { key } });
const ip = (field: 'saddr' | 'daddr'): PayloadExpr => ({ payload: { protocol: 'ip', field } });
const dport = (protocol: 'tcp' | 'udp'): PayloadExpr => ({ payload: { protocol, field: 'dport' } });
const eq = (left: Match['match']['left'], right: Match['match']['right']): Match => ({ match: { op: '==', left, right } });
const ne = (left: Match['match']['left'], right: Match['match']['right']): Match => ({ match: { op: '!=', left, right } });
const prefix = (addr: string, len: number): PrefixExpr => ({ prefix: { addr, len } });
const ACCEPT = (): Statement => ({ accept: null });
const REJECT = (): Statement => ({ reject: null });
const RETURN = (): Statement => ({ return: null });

interface Subnet {
  bridge: string;
  net: PrefixExpr;
  address: string;
}

function parseNetwork(n: NatNetwork): Subnet {
  let addr: ipaddr.IPv4;
  let len: number;
  try {
    [addr, len] = ipaddr.IPv4.parseCIDR(n.cidr);
  } catch (cause) {
    throw new RulesetError(`network on bridge ${JSON.stringify(n.bridge)}: cidr ${JSON.stringify(n.cidr)} is not an IPv4 CIDR`, { cause });
  }
  const network = ipaddr.IPv4.networkAddressFromCIDR(n.cidr).toString();
  if (network !== addr.toString()) {
    throw new RulesetError(
      `network on bridge ${JSON.stringify(n.bridge)}: cidr ${JSON.stringify(n.cidr)} has host bits set (network is ${network}/${len})`,
    );
  }
  let host: ipaddr.IPv4;
  try {
    host = ipaddr.IPv4.parse(n.address);
  } catch (cause) {
    throw new RulesetError(`network on bridge ${JSON.stringify(n.bridge)}: address ${JSON.stringify(n.address)} is not an IPv4 address`, { cause });
  }
  if (!host.match(addr, len)) {
    throw new RulesetError(`network on bridge ${JSON.stringify(n.bridge)}: address ${n.address} is outside ${n.cidr}`);
  }
  return { bridge: n.bridge, net: prefix(network, len), address: host.toString() };
}

/** Forward rules for one network, in three groups that are laid out group by group across networks. */
function forwardGroups(s: Subnet): { cross: Statement[][]; toBridge: Statement[][]; fromBridge: Statement[][] } {
  const br = s.bridge;
  return {
    // guest <-> guest on the same bridge (br_netfilter sends bridged frames through the forward hook)
    cross: [[eq(meta('iifname'), br), eq(meta('oifname'), br), ACCEPT()]],
    // into the guests: only replies; an unsolicited connection (from outside or another vnet network) is refused
    toBridge: [
      [eq(meta('oifname'), br), eq(ip('daddr'), s.net), { match: { op: 'in', left: { ct: { key: 'state' } }, right: ['established', 'related'] } }, ACCEPT()],
      [eq(meta('oifname'), br), REJECT()],
    ],
    // out of the guests: only from the network's own subnet (no spoofed sources)
    fromBridge: [
      [eq(meta('iifname'), br), eq(ip('saddr'), s.net), ACCEPT()],
      [eq(meta('iifname'), br), REJECT()],
    ],
  };
}

function postroutingRules(s: Subnet): Statement[][] {
  const fromNet = (): Match => eq(ip('saddr'), s.net);
  const leaving = (): Statement[] => [fromNet(), ne(ip('daddr'), s.net), ne(meta('oifname'), s.bridge)];
  return [
    // multicast and broadcast are never translated
    [fromNet(), eq(ip('daddr'), prefix('224.0.0.0', 24)), RETURN()],
    [fromNet(), eq(ip('daddr'), '255.255.255.255'), RETURN()],
    [...leaving(), eq(meta('l4proto'), 'tcp'), { masquerade: { port: { range: [...MASQ_PORTS] } } }],
    [...leaving(), eq(meta('l4proto'), 'udp'), { masquerade: { port: { range: [...MASQ_PORTS] } } }],
    [...leaving(), { masquerade: null }],
  ];
}

function inputRules(s: Subnet): Statement[][] {
  const fromBr = (): Match => eq(meta('iifname'), s.bridge);
  return [
    [fromBr(), eq(dport('udp'), 67), ACCEPT()], // DHCP
    [fromBr(), eq(dport('udp'), 53), ACCEPT()], // DNS
    [fromBr(), eq(dport('tcp'), 53), ACCEPT()],
    // dnsmasq answers on the bridge address; nobody outside the bridge may ask it
    [ne(meta('iifname'), s.bridge), eq(ip('daddr'), s.address), eq(dport('udp'), 53), REJECT()],
    [ne(meta('iifname'), s.bridge), eq(ip('daddr'), s.address), eq(dport('tcp'), 53), REJECT()],
  ];
}

/**
 * The whole transaction for these networks. `add table` first makes the `delete table`
 * valid whether or not the table exists; with no networks the table is simply gone.
 * Output depends only on the set of networks, not their order (sorted by bridge).
 */
export function buildRuleset(networks: readonly NatNetwork[]): NftCommands {
  const subnets = networks.map(parseNetwork).sort((a, b) => (a.bridge < b.bridge ? -1 : a.bridge > b.bridge ? 1 : 0));
  for (let i = 1; i < subnets.length; i++) {
    if (subnets[i]?.bridge === subnets[i - 1]?.bridge) {
      throw new RulesetError(`bridge ${JSON.stringify(subnets[i]?.bridge)} appears in more than one network`);
    }
  }

  const cmds: NftCommand[] = [{ add: { table: tableRef() } }, { delete: { table: tableRef() } }];
  if (subnets.length === 0) return { nftables: cmds };

  cmds.push({ add: { table: tableRef() } });
  for (const c of CHAINS) cmds.push({ add: { chain: { family: TABLE.family, table: TABLE.name, ...c } } });

  const rule = (chain: ChainName, expr: Statement[]): NftCommand => ({ add: { rule: { family: TABLE.family, table: TABLE.name, chain, expr } } });
  const groups = subnets.map(forwardGroups);
  // Group order as libvirt: cross, then into-bridge, then out-of-bridge. So traffic from
  // one vnet network to another meets the target's `oifname reject` before the source's accept.
  for (const key of ['cross', 'toBridge', 'fromBridge'] as const) {
    for (const g of groups) for (const e of g[key]) cmds.push(rule('forward', e));
  }
  for (const s of subnets) for (const e of postroutingRules(s)) cmds.push(rule('postrouting', e));
  for (const s of subnets) for (const e of inputRules(s)) cmds.push(rule('input', e));
  return { nftables: cmds };
}

/**
 * Number of rules in either a transaction from buildRuleset (`add rule` commands) or
 * the output of `nft -j list ...` (`rule` objects).
 */
export function ruleCount(json: unknown): number {
  if (typeof json !== 'object' || json === null) return 0;
  const list = (json as { nftables?: unknown }).nftables;
  if (!Array.isArray(list)) return 0;
  let n = 0;
  for (const item of list) {
    if (typeof item !== 'object' || item === null) continue;
    if ('rule' in item) n += 1;
    const add = (item as { add?: unknown }).add;
    if (typeof add === 'object' && add !== null && 'rule' in add) n += 1;
  }
  return n;
}

/** Rules one network adds (forward 5, postrouting 5, input 5). */
export const RULES_PER_NETWORK = 15;
