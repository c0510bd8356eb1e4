/**
 * The shape of vnet's one table, `inet vnet`: a few base chains whose only rules dispatch, by
 * verdict map, to chains of each network. A network's rules live in chains of its own and
 * its entries in the maps, so adding, changing or removing one network touches only its own
 * objects: the cost of a change does not grow with the number of networks, and traffic of the
 * other networks never sees a half-made table.
 *
 * Order matters only inside the base chains: in `forward`, traffic TO a vnet bridge meets that
 * bridge's chain before traffic FROM a bridge meets its own, so one vnet network can never open
 * connections into another (the target's rules refuse first), as libvirt's rule groups do.
 */
import { addr, dport, eq, localDaddr, meta, ne, prefix, vmap, type Rule } from './expr.js';

export const TABLE = { family: 'inet', name: 'vnet' } as const;

export type MapName = 'to_bridge' | 'from_bridge' | 'in_bridge' | 'guard4' | 'nat4' | 'guard6' | 'nat6' | 'dnat_tcp' | 'dnat_udp';

export interface MapDef {
  name: MapName;
  /** nft key type */
  type: 'ifname' | 'ipv4_addr' | 'ipv6_addr' | 'inet_service';
  /** interval maps hold prefixes (subnets) */
  interval: boolean;
}

export interface BaseChainDef {
  name: 'forward' | 'input' | 'postrouting' | 'prerouting' | 'output';
  type: 'filter' | 'nat';
  hook: 'forward' | 'input' | 'postrouting' | 'prerouting' | 'output';
  prio: number;
  /** every base chain accepts what no rule decides: vnet never drops traffic that is not its own */
  policy: 'accept';
  rules: Rule[];
}

export const MAPS: readonly MapDef[] = [
  { name: 'to_bridge', type: 'ifname', interval: false },
  { name: 'from_bridge', type: 'ifname', interval: false },
  { name: 'in_bridge', type: 'ifname', interval: false },
  { name: 'guard4', type: 'ipv4_addr', interval: false },
  { name: 'nat4', type: 'ipv4_addr', interval: true },
  { name: 'guard6', type: 'ipv6_addr', interval: false },
  { name: 'nat6', type: 'ipv6_addr', interval: true },
  // port forwards: a host port → the chain of the one network that forwards it
  { name: 'dnat_tcp', type: 'inet_service', interval: false },
  { name: 'dnat_udp', type: 'inet_service', interval: false },
];

/**
 * Port forwards are looked up for IPv4 packets to one of the host's own addresses only (a
 * guest's connection to port 8080 elsewhere is never taken), arriving (prerouting) or made by
 * the host itself (output; never to loopback, which cannot leave the host).
 */
const toHost: Rule = [eq(meta('nfproto'), 'ipv4'), localDaddr()];
const fromHost: Rule = [ne(addr(4, 'daddr'), prefix('127.0.0.0', 8)), localDaddr()];
const dnatDispatch = (match: Rule): Rule[] => [
  [...match, vmap(dport('tcp'), 'dnat_tcp')],
  [...match, vmap(dport('udp'), 'dnat_udp')],
];

export const BASE_CHAINS: readonly BaseChainDef[] = [
  {
    name: 'forward',
    type: 'filter',
    hook: 'forward',
    prio: 0,
    policy: 'accept',
    rules: [[vmap(meta('oifname'), 'to_bridge')], [vmap(meta('iifname'), 'from_bridge')]],
  },
  {
    name: 'input',
    type: 'filter',
    hook: 'input',
    prio: 0,
    policy: 'accept',
    rules: [[vmap(meta('iifname'), 'in_bridge')], [vmap(addr(4, 'daddr'), 'guard4')], [vmap(addr(6, 'daddr'), 'guard6')]],
  },
  { name: 'postrouting', type: 'nat', hook: 'postrouting', prio: 100, policy: 'accept', rules: [[vmap(addr(4, 'saddr'), 'nat4')], [vmap(addr(6, 'saddr'), 'nat6')]] },
  { name: 'prerouting', type: 'nat', hook: 'prerouting', prio: -100, policy: 'accept', rules: dnatDispatch(toHost) },
  { name: 'output', type: 'nat', hook: 'output', prio: -100, policy: 'accept', rules: dnatDispatch(fromHost) },
];

export function mapDef(name: MapName): MapDef {
  return MAPS.find((m) => m.name === name)!;
}

export function isBaseChain(name: string): boolean {
  return BASE_CHAINS.some((c) => c.name === name);
}
