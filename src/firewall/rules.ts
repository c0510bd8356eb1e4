/**
 * What vnet's table holds for one network, by forward mode (libvirt's rule logic, see the
 * README): pure, from the spec alone.
 *
 *   to-BR     traffic routed INTO the bridge: guests among themselves, then replies only (nat) or
 *             anything to the subnets (route)
 *   from-BR   traffic routed OUT of the bridge: only from the network's own subnets (no spoofing)
 *   in-BR     traffic to the host from the bridge: DHCP and DNS accepted
 *   guard-BR  traffic to the bridge's address from elsewhere: DNS refused (dnsmasq serves guests only)
 *   nat-BR    masquerade (or SNAT to `nat-address`) of what leaves the subnet, never of multicast or broadcast
 *   dnat-BR   port forwards (firewall/forward-rules.ts), which also add to to-BR and nat-BR
 *   nat6-BR   with `nat6`: masquerade of what leaves the IPv6 subnets, never of multicast
 *
 * IPv6 mirrors IPv4 per mode, as libvirt does: in a NAT network the `address6` subnets are routed
 * both ways (as forward = "route") unless `nat6` masquerades them (then replies only come in);
 * the host's services on the bridge add DHCPv6 and ICMPv6 (router solicitations, neighbour discovery).
 *
 * "open" and "bridge" networks have no part at all: vnet adds no rule for them.
 * `nat-interface` narrows a NAT network to one uplink, as libvirt's `<forward dev>`: forwarding
 * and translation happen only through that interface.
 */
import type { IfAddress } from '../net/ip.js';
import { addressesOf, primary4, type NatOptions, type NetworkSpec } from '../spec/spec.js';
import { ACCEPT, addr, dport, eq, established, meta, ne, prefix, REJECT, RETURN, type Rule, type Statement } from './expr.js';
import { acceptForwarded, appliedForwards, dnatRules, hairpin } from './forward-rules.js';
import type { Part } from './table.js';

/** Source ports masquerade may pick for TCP/UDP, as libvirt does: never a privileged one. */
export const MASQ_PORTS: [number, number] = [1024, 65535];

const ROLES = ['to', 'from', 'in', 'guard', 'nat', 'nat6', 'dnat'] as const;
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

function serviceRules6(): Rule[] {
  return [
    [eq(dport('udp'), 547), ACCEPT], // DHCPv6
    [eq(meta('l4proto'), 'ipv6-icmp'), ACCEPT], // router solicitations, neighbour discovery, ping
  ];
}

function guardRules(bridge: string): Rule[] {
  return [
    // the host's own resolver (systemd-resolved, see hostdns/) asks the network's DNS for its domain
    [eq(meta('iifname'), 'lo'), RETURN],
    [ne(meta('iifname'), bridge), eq(dport('udp'), 53), REJECT],
    [ne(meta('iifname'), bridge), eq(dport('tcp'), 53), REJECT],
  ];
}

/** The translation of one packet: masquerade, or SNAT to `nat.address`; with a port range for TCP and UDP. */
function translate(nat: NatOptions, withPorts: boolean): Statement {
  const ports: [number, number] = nat.ports ? [nat.ports.start, nat.ports.end] : [...MASQ_PORTS];
  const port = withPorts ? { port: { range: ports } } : {};
  if (!nat.address) return { masquerade: withPorts ? { port: { range: ports } } : null };
  const { start, end } = nat.address;
  return { snat: { family: 'ip', addr: start === end ? start : { range: [start, end] }, ...port } };
}

function natRules(bridge: string, net: ReturnType<typeof prefix>, nat: NatOptions): Rule[] {
  // out of the uplink named, or out of anything but the bridge itself
  const out = nat.interface !== undefined ? eq(meta('oifname'), nat.interface) : ne(meta('oifname'), bridge);
  const leaving = () => [ne(addr(4, 'daddr'), net), out];
  return [
    [eq(addr(4, 'daddr'), prefix('224.0.0.0', 24)), RETURN],
    [eq(addr(4, 'daddr'), '255.255.255.255'), RETURN],
    [...leaving(), eq(meta('l4proto'), 'tcp'), translate(nat, true)],
    [...leaving(), eq(meta('l4proto'), 'udp'), translate(nat, true)],
    [...leaving(), translate(nat, false)],
  ];
}

/** NAT66: masquerade of what leaves the network's IPv6 subnets (never to one of them, never multicast). */
function nat6Rules(bridge: string, nets: ReturnType<typeof prefix>[], nat: NatOptions): Rule[] {
  const out = nat.interface !== undefined ? eq(meta('oifname'), nat.interface) : ne(meta('oifname'), bridge);
  const ports: [number, number] = nat.ports ? [nat.ports.start, nat.ports.end] : [...MASQ_PORTS];
  return [
    [eq(addr(6, 'daddr'), prefix('ff00::', 8)), RETURN],
    ...nets.map((n): Rule => [eq(addr(6, 'daddr'), n), RETURN]),
    [out, eq(meta('l4proto'), 'tcp'), { masquerade: { port: { range: ports } } }],
    [out, eq(meta('l4proto'), 'udp'), { masquerade: { port: { range: ports } } }],
    [out, { masquerade: null }],
  ];
}

const subnet = (a: IfAddress) => prefix(a.network, a.prefix);

/** The network's part of the table; undefined when its mode wants no rules at all ("open", "bridge"). */
export function firewallPart(spec: NetworkSpec): Part | undefined {
  const mode = spec.forward.mode;
  if (mode === 'open' || mode === 'bridge') return undefined;
  const br = spec.bridge.name;
  const v4 = primary4(spec);
  if (!v4) return undefined;
  const net = subnet(v4);
  const v6 = addressesOf(spec, 6);
  const nets6 = v6.map(subnet);
  const nat6 = mode === 'nat' && spec.forward.nat6 === true;
  const part: Part = { bridge: br, chains: [], elements: [] };
  const chain = (role: Parameters<typeof chainName>[0], rules: Rule[], map: Part['elements'][number]['map'], key: unknown) => {
    const name = chainName(role, br);
    part.chains.push({ name, rules });
    part.elements.push({ map, key, target: name });
  };
  const cross: Rule = [eq(meta('iifname'), br), ACCEPT]; // guest <-> guest (bridged frames cross the forward hook)
  const fwd = appliedForwards(spec); // port forwards (firewall/forward-rules.ts)
  // nat-interface: forwarding (and translation) through that one uplink, in NAT and route mode
  const via = spec.forward.mode === 'nat' || spec.forward.mode === 'route' ? spec.forward.interface : undefined;
  const from = via !== undefined ? [eq(meta('iifname'), via)] : [];
  const to = via !== undefined ? [eq(meta('oifname'), via)] : [];
  if (mode === 'isolated') {
    chain('to', [cross, [REJECT]], 'to_bridge', br);
    chain('from', [[REJECT]], 'from_bridge', br);
  } else if (mode === 'nat') {
    // IPv6: replies only with NAT66, else routed both ways (libvirt's rules for a NAT network's IPv6)
    const into6 = nets6.map((n): Rule => [...from, eq(addr(6, 'daddr'), n), ...(nat6 ? [established()] : []), ACCEPT]);
    const out6 = nets6.map((n): Rule => [eq(addr(6, 'saddr'), n), ...to, ACCEPT]);
    chain('to', [cross, [...from, eq(addr(4, 'daddr'), net), established(), ACCEPT], ...into6, ...acceptForwarded(fwd), [REJECT]], 'to_bridge', br);
    chain('from', [[eq(addr(4, 'saddr'), net), ...to, ACCEPT], ...out6, [REJECT]], 'from_bridge', br);
  } else {
    // route: the network's subnets, both families, both ways; no translation
    chain('to', [cross, [...from, eq(addr(4, 'daddr'), net), ACCEPT], ...nets6.map((n): Rule => [...from, eq(addr(6, 'daddr'), n), ACCEPT]), [REJECT]], 'to_bridge', br);
    chain('from', [[eq(addr(4, 'saddr'), net), ...to, ACCEPT], ...nets6.map((n): Rule => [eq(addr(6, 'saddr'), n), ...to, ACCEPT]), [REJECT]], 'from_bridge', br);
  }
  chain('in', [...serviceRules(), ...(v6.length ? serviceRules6() : [])], 'in_bridge', br);
  chain('guard', guardRules(br), 'guard4', v4.address);
  // the same guard for the bridge's IPv6 addresses (dnsmasq answers DNS on them too)
  for (const a of v6) part.elements.push({ map: 'guard6', key: a.address, target: chainName('guard', br) });
  if (spec.forward.mode === 'nat') chain('nat', [...natRules(br, net, spec.forward), ...hairpin(fwd, net)], 'nat4', net);
  else if (fwd.length) chain('nat', hairpin(fwd, net), 'nat4', net);
  if (nat6 && spec.forward.mode === 'nat') {
    chain('nat6', nat6Rules(br, nets6, spec.forward), 'nat6', nets6[0]);
    for (const n of nets6.slice(1)) part.elements.push({ map: 'nat6', key: n, target: chainName('nat6', br) });
  }
  if (fwd.length) {
    const name = chainName('dnat', br);
    part.chains.push({ name, rules: dnatRules(fwd) });
    for (const f of fwd) part.elements.push({ map: f.proto === 'tcp' ? 'dnat_tcp' : 'dnat_udp', key: f.hostPort, target: name });
  }
  return part;
}
