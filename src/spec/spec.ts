/**
 * The typed network specification every layer reads: a definition (an admin's TOML file, the
 * built-in default, later a user's own network) parsed into sections. Nothing here touches
 * the kernel; parsing lives in spec/parse.ts.
 */
import type { Family, IfAddress } from '../net/ip.js';

export type ForwardMode = 'nat' | 'route' | 'isolated' | 'open' | 'bridge';

/**
 * What vnet forwards for a network, and how:
 * - nat: guests reach out through masquerade; nothing reaches in unasked.
 * - route: the subnet is routed both ways, no translation (through one uplink with `nat-interface`).
 * - isolated: guests reach each other and the host's DHCP/DNS; nothing is forwarded.
 * - open: vnet adds no firewall rules at all.
 * - bridge: an existing bridge (NetworkManager's, the admin's) that vnet neither creates nor deletes.
 */
export type Forward =
  | ({ mode: 'nat' } & NatOptions)
  | { mode: 'route'; /** forward only to and from this uplink (libvirt's `<forward mode='route' dev>`) */ interface?: string }
  | { mode: 'isolated' }
  | { mode: 'open' }
  | { mode: 'bridge' };

/** A range of IPv4 addresses ("198.51.100.10-198.51.100.20"); start === end for one address. */
export interface AddressRange {
  start: string;
  end: string;
}

/** A range of ports, 1..65535, start <= end. */
export interface PortRange {
  start: number;
  end: number;
}

/** What libvirt's `<nat>` offers: where NAT happens and what it translates to. */
export interface NatOptions {
  /** masquerade only out of this interface, and forward only to and from it (libvirt's `<forward dev>`) */
  interface?: string;
  /** SNAT to these addresses instead of masquerade */
  address?: AddressRange;
  /** source ports of translated TCP and UDP; default 1024-65535 (never a privileged one) */
  ports?: PortRange;
  /** NAT66 (libvirt's `<nat ipv6='yes'>`): masquerade the network's IPv6 subnets too, unique local ones only; else IPv6 is routed */
  nat6?: boolean;
}

export interface BridgeSpec {
  /** interface name, validated (names.ts) */
  name: string;
  /** true: vnet creates and deletes it; false: it exists already and is left in place */
  managed: boolean;
  /** MTU of the bridge and of every tap on it; undefined: the kernel's default */
  mtu?: number;
}

export interface DhcpRange {
  start: string;
  end: string;
}

export interface DhcpSpec {
  /** IPv4 range; absent: no DHCPv4 (DNS is still served) */
  range4?: DhcpRange;
  /** IPv6 range (stateful DHCPv6), inside one of the `address6` subnets; absent: SLAAC only */
  range6?: DhcpRange;
  /** upper bound on leases */
  leaseMax: number;
  /** seconds a lease lasts (0: infinite); absent: one hour */
  leaseTime?: number;
  /** guests known by MAC and/or name, with fixed addresses (`[[hosts]]`, spec/keys/hosts.ts) */
  hosts?: StaticHost[];
}

/** A `[[hosts]]` entry: matched by MAC (or, without one, by the name the guest sends), given `ips`. */
export interface StaticHost {
  /** lower case, colon-separated */
  mac?: string;
  name?: string;
  /** canonical addresses, at most one of each family */
  ips: string[];
  /** seconds (0: infinite); absent: the network's */
  leaseTime?: number;
}

/** An extra DNS record, as libvirt's <dns> has them (spec/keys/dns-records.ts). */
export type DnsRecord =
  | { type: 'host'; ip: string; names: string[] }
  | { type: 'srv'; service: string; protocol: 'tcp' | 'udp'; domain?: string; target?: string; port?: number; priority?: number; weight?: number }
  | { type: 'txt'; name: string; value: string };

/** An upstream DNS server: for every name, or (with `domain`) for names under that domain only. */
export interface DnsForwarder {
  addr: string;
  domain?: string;
}

export interface DnsSpec {
  /** DNS domain served to guests */
  domain?: string;
  /** dns = false: no DNS server at all (DHCP still runs); absent: on */
  off?: boolean;
  records?: DnsRecord[];
  forwarders?: DnsForwarder[];
}

export interface AccessSpec {
  /** user names allowed to get taps; neither list: every local user */
  allowUsers?: string[];
  allowGroups?: string[];
  /**
   * a user network's: the uids its owner let in, resolved when they were listed (allowUsers are
   * their names, for people); its owner and root always may, nobody else
   */
  allowUids?: number[];
}

export type Standby = 'none' | 'stub';

export interface LifecycleSpec {
  /** comes up when a VM asks for a tap */
  onDemand: boolean;
  /** seconds after the last tap before an on-demand network goes down */
  idleDown: number;
  /** "stub": keep an UP bridge (no address, rules or dnsmasq) while idle */
  standby: Standby;
  /** vnetd brings the network up when it starts (once per boot) and keeps it up, as libvirt's net-autostart */
  autostart: boolean;
}

/** Who a network belongs to: the admin's definitions, or a user's own network (src/usernet/). */
export type Owner = { kind: 'admin' } | { kind: 'user'; uid: number; user: string };

export interface NetworkSpec {
  /** "default", "office": the file name without .toml */
  name: string;
  /** where it came from: a file path, or "built-in" */
  source: string;
  owner: Owner;
  bridge: BridgeSpec;
  /**
   * the bridge's own addresses, tagged by family: one IPv4 address, except for forward = "bridge"
   * (optional there) and for address = "auto" until vnetd picked its subnet (see `auto`)
   */
  addresses: IfAddress[];
  /**
   * address = "auto": vnetd picks a free IPv4 subnet of this prefix length from its pool
   * (runtime/auto-subnets.ts) and puts its first address and DHCP range in; the spec stays pure.
   */
  auto?: { prefixLength: number };
  forward: Forward;
  dhcp: DhcpSpec;
  dns: DnsSpec;
  access: AccessSpec;
  lifecycle: LifecycleSpec;
  /** host ports forwarded to guests: `[[forwards]]` and, merged in by vnetd, `vnet forward add` */
  portForwards?: PortForward[];
}

/**
 * One port forward: what reaches the host on `hostPort` (any host address but loopback) goes to
 * `guest`'s `guestPort`. `guest` is kept as written (an IPv4 address or a `[[hosts]]` name), so a
 * static host whose address is edited takes its forwards along (spec/port-forwards.ts resolves it).
 */
export interface PortForward {
  proto: 'tcp' | 'udp';
  hostPort: number;
  guest: string;
  guestPort: number;
  /** "definition": the file's `[[forwards]]`; "runtime": added with `vnet forward add` (kept in $VNET_STATE_DIR) */
  origin: 'definition' | 'runtime';
}

export function addressesOf(spec: NetworkSpec, family: Family): IfAddress[] {
  return spec.addresses.filter((a) => a.family === family);
}

/** The network's first IPv4 address (where dnsmasq listens, and what status shows). */
export function primary4(spec: NetworkSpec): IfAddress | undefined {
  return spec.addresses.find((a) => a.family === 4);
}

/** Does the network route traffic through the host (so IPv4 forwarding must be on)? "open" does, without rules. */
export function forwards(spec: NetworkSpec): boolean {
  return spec.forward.mode === 'nat' || spec.forward.mode === 'route' || spec.forward.mode === 'open';
}

/** Does the network route IPv6 through the host (so IPv6 forwarding must be on)? */
export function forwards6(spec: NetworkSpec): boolean {
  return forwards(spec) && spec.addresses.some((a) => a.family === 6);
}

/** address = "auto" and no subnet picked yet: nothing can be brought up before vnetd picks one. */
export function unresolved(spec: NetworkSpec): boolean {
  return spec.auto !== undefined && primary4(spec) === undefined;
}
