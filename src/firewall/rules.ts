/**
 * What vnet's table holds for one network, by forward mode (libvirt's rule logic, see the
 * README): pure, from the spec alone.
 *
 *   to-BR     traffic routed INTO the bridge: guests among themselves, then replies only (nat)
 *   from-BR   traffic routed OUT of the bridge: only from the network's own subnet (no spoofing)
 *   in-BR     traffic to the host from the bridge: DHCP and DNS accepted
 *   guard-BR  traffic to the bridge's address from elsewhere: DNS refused (dnsmasq serves guests only)
 *   nat-BR    masquerade of what leaves the subnet, never of multicast or broadcast
 */
import { primary4, type NetworkSpec } from '../spec/spec.js';
import { ACCEPT, addr, dport, eq, established, meta, ne, prefix, REJECT, RETURN, type Rule } from './expr.js';
import type { Part } from './table.js';

/** Source ports masquerade may pick for TCP/UDP, as libvirt does: never a privileged one. */
const MASQ_PORTS: [number, number] = [1024, 65535];

const ROLES = ['to', 'from', 'in', 'guard', 'nat'] as const;
export const chainName = (role: (typeof ROLES)[number], bridge: string) => `${role}-${bridge}`;

/** Every chain name a network on `bridge` can have, whatever its mode: what removing it removes. */
export function chainsOf(bridge: string): string[] {
  return ROLES.map((r) => chainName(r, bridge));
}

function serviceRules(): Rule[] {
  return [
    [eq(dport('udp'), 67), ACCEPT], // DHCP
    [eq(dport('udp'), 53), ACCEPT], // DNS
    [eq(dport('tcp'), 53), ACCEPT],
  ];
}

function guardRules(bridge: string): Rule[] {
  return [
    [ne(meta('iifname'), bridge), eq(dport('udp'), 53), REJECT],
    [ne(meta('iifname'), bridge), eq(dport('tcp'), 53), REJECT],
  ];
}

function natRules(bridge: string, net: ReturnType<typeof prefix>): Rule[] {
  const leaving = () => [ne(addr(4, 'daddr'), net), ne(meta('oifname'), bridge)];
  return [
    [eq(addr(4, 'daddr'), prefix('224.0.0.0', 24)), RETURN],
    [eq(addr(4, 'daddr'), '255.255.255.255'), RETURN],
    [...leaving(), eq(meta('l4proto'), 'tcp'), { masquerade: { port: { range: [...MASQ_PORTS] } } }],
    [...leaving(), eq(meta('l4proto'), 'udp'), { masquerade: { port: { range: [...MASQ_PORTS] } } }],
    [...leaving(), { masquerade: null }],
  ];
}

/** The network's part of the table; undefined when its mode wants no rules at all ("open"). */
export function firewallPart(spec: NetworkSpec): Part | undefined {
  const mode = spec.forward.mode;
  if (mode === 'open' || mode === 'bridge') return undefined;
  const br = spec.bridge.name;
  const v4 = primary4(spec);
  if (!v4) return undefined;
  const net = prefix(v4.network, v4.prefix);
  const part: Part = { bridge: br, chains: [], elements: [] };
  const chain = (role: Parameters<typeof chainName>[0], rules: Rule[], map: Part['elements'][number]['map'], key: unknown) => {
    const name = chainName(role, br);
    part.chains.push({ name, rules });
    part.elements.push({ map, key, target: name });
  };
  const cross: Rule = [eq(meta('iifname'), br), ACCEPT]; // guest <-> guest (bridged frames cross the forward hook)
  if (mode === 'isolated') {
    chain('to', [cross, [REJECT]], 'to_bridge', br);
    chain('from', [[REJECT]], 'from_bridge', br);
  } else {
    const inbound: Rule = mode === 'nat' ? [eq(addr(4, 'daddr'), net), established(), ACCEPT] : [eq(addr(4, 'daddr'), net), ACCEPT];
    chain('to', [cross, inbound, [REJECT]], 'to_bridge', br);
    chain('from', [[eq(addr(4, 'saddr'), net), ACCEPT], [REJECT]], 'from_bridge', br);
  }
  chain('in', serviceRules(), 'in_bridge', br);
  chain('guard', guardRules(br), 'guard4', v4.address);
  if (mode === 'nat') chain('nat', natRules(br, net), 'nat4', net);
  return part;
}
