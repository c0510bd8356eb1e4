/**
 * The typed model every layer shares: a validated network definition, and the
 * runtime facts the daemon keeps about it. Parsing lives in config/definition.ts;
 * nothing here touches the kernel.
 */

export type ForwardMode = 'nat';
export type Standby = 'none' | 'stub';

/** An IPv4 host address on a subnet, e.g. 192.168.122.1/24. */
export interface Ipv4Interface {
  /** host address, dotted quad ("192.168.122.1") */
  address: string;
  /** prefix length, 8..30 */
  prefix: number;
  /** network address, dotted quad ("192.168.122.0") */
  network: string;
  /** "192.168.122.0/24" */
  cidr: string;
}

export interface DhcpRange {
  start: string;
  end: string;
}

/** A validated network definition (from TOML or built in). */
export interface NetworkDef {
  /** network name: file name without .toml ("default", "office") */
  name: string;
  /** where it came from: a file path, or "built-in" */
  source: string;
  bridge: string;
  ipv4: Ipv4Interface;
  /** absent: no DHCP server (dnsmasq still serves DNS) */
  dhcpRange?: DhcpRange;
  forward: ForwardMode;
  onDemand: boolean;
  /** seconds after the last tap goes before an on-demand network goes down */
  idleDown: number;
  standby: Standby;
  /** user names allowed to get taps; undefined = every local user */
  allowUsers?: string[];
  /** group names allowed to get taps */
  allowGroups?: string[];
  /** DNS domain served to guests, optional */
  domain?: string;
  /** bridge MTU, undefined = kernel default */
  mtu?: number;
  /** upper bound on DHCP leases */
  dhcpLeaseMax: number;
}

/** Credentials of a peer, from SO_PEERCRED: the only identity vnet trusts. */
export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
  /** supplementary groups, when the transport tells them (SO_PEERGROUPS); else read from /proc */
  groups?: number[];
}

export type NetworkState = 'down' | 'stub' | 'starting' | 'up' | 'stopping' | 'failed';

export interface TapInfo {
  name: string;
  ifindex: number;
  /** the caller's uid (SO_PEERCRED); the tap is owned by it */
  uid: number;
  /** the process holding the tap: the bridge helper's parent, i.e. QEMU */
  pid: number;
}

export interface Lease {
  /** unix seconds; 0 = infinite */
  expires: number;
  mac: string;
  ip: string;
  hostname: string;
  clientId: string;
}
