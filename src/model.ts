/**
 * Runtime facts every layer shares: who is calling, what state a network is in, its taps and
 * leases. Network definitions are in spec/spec.ts.
 */

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
  /** DHCPv4: the client id; DHCPv6: the client's DUID */
  clientId: string;
  /**
   * DHCPv6 leases only: the identity association's id (decimal; "T…" for a temporary address).
   * Their `mac` is the one in the DUID when it holds one (DUID-LL, DUID-LLT of Ethernet), else "".
   */
  iaid?: string;
}
