/**
 * The one API of vnetd. The unix-socket server, the D-Bus object and the bridge helper's tap
 * requests are all thin adapters over this interface.
 */
import type { LeasePage, LeaseQuery } from '../dhcp/lease-page.js';
import type { Lease, NetworkState, PeerCred, TapInfo } from '../model.js';
import type { NetworkRecord } from '../runtime/network-runtime.js';
import { primary4, type NetworkSpec } from '../spec/spec.js';
import type { CreateRequest } from '../usernet/user-networks.js';

export type { CreateRequest };

export type { LeasePage, LeaseQuery };

export interface NetworkStatus {
  name: string;
  bridge: string;
  state: NetworkState;
  /** "192.168.122.0/24" */
  subnet: string;
  address: string;
  /** every address of the bridge, "192.168.122.1/24", "fd00:1::1/64" */
  addresses: string[];
  forward: string;
  onDemand: boolean;
  /** true when brought up by `vnet up` (stays until `vnet down`) */
  pinned: boolean;
  /** unexpired leases (0 when the lease file cannot be read: see leasesProblem) */
  leases: number;
  /** why this network's lease file cannot be read, e.g. "lease file PATH: is not a regular file" */
  leasesProblem?: string;
  taps: TapInfo[];
  /** why the network failed, when state is "failed" */
  reason?: string;
  /** while up: a route or address of another interface that overlaps its subnet (a VPN came up) */
  conflict?: { subnet: string; interface: string; detail: string };
  source: string;
  /** a user's own network: who created it (its name is OWNER:NAME) and who else may use it */
  owner?: { uid: number; user: string; allowUsers: string[] };
  /** the definition file was edited since the network came up: `vnet reload` applies it */
  edited?: true;
}

/** One port forward as `forward list` shows it. */
export interface PortForwardInfo {
  network: string;
  proto: 'tcp' | 'udp';
  hostPort: number;
  /** as given: an IPv4 address or a [[hosts]] name */
  guest: string;
  /** the guest's address ("" when it does not resolve: see problem) */
  address: string;
  guestPort: number;
  /** "definition" ([[forwards]]) or "runtime" (`vnet forward add`) */
  origin: 'definition' | 'runtime';
  /** in the firewall now: the network is up and the guest resolves inside it */
  active: boolean;
  /** why it cannot apply (its guest does not resolve inside the network) */
  problem?: string;
}

/** What `forward add` is given; guestPort absent: the host port. */
export interface PortForwardRequest {
  proto: 'tcp' | 'udp';
  hostPort: number;
  guest: string;
  guestPort?: number;
}

export interface TapResult {
  fd: number;
  name: string;
}

export type ServiceEvent =
  | { type: 'network-state'; name: string; state: NetworkState; reason?: string }
  | { type: 'tap-added'; network: string; tap: TapInfo }
  | { type: 'tap-removed'; network: string; tap: TapInfo }
  | { type: 'lease-added'; network: string; lease: Lease }
  | { type: 'lease-removed'; network: string; lease: Lease }
  /** a subnet conflict appeared on an up network, or cleared (no conflict) */
  | { type: 'subnet-conflict'; network: string; conflict?: { subnet: string; interface: string; detail: string } };

/** What `reload` did to one running network. */
export interface ReloadResult {
  name: string;
  /** the definition keys whose change was applied ([] when the file says what runs) */
  changed: string[];
}

export interface VnetService {
  /** The networks `caller` may see (none given: the admin's alone). */
  list(caller?: PeerCred): Promise<NetworkStatus[]>;
  /** One network as `caller` names it (src/usernet/resolve.ts); one they may not see is ENOENT. */
  status(name: string, caller?: PeerCred): Promise<NetworkStatus>;
  /** Bring a network up and pin it (stays up until down). Needs an admin caller. */
  up(name: string, caller: PeerCred): Promise<NetworkStatus>;
  /** Take a network down; refuses while taps are in use unless `force`. Needs an admin caller. */
  down(name: string, caller: PeerCred, opts?: { force?: boolean }): Promise<NetworkStatus>;
  /**
   * One page of a network's leases, sorted by address then MAC: those after the cursor
   * `query.after`, at most `query.limit`, and no more than fit `query.maxBytes` (default: one
   * socket frame). `next` is the cursor of the following page, null on the last one.
   * Bad cursor or limit: EINVAL; an unreadable lease file: EIO naming the problem.
   */
  leases(name: string, query?: LeaseQuery, caller?: PeerCred): Promise<LeasePage>;
  /** Create a network of the caller's own, within [user-networks] of vnet.toml. */
  create(req: CreateRequest, caller: PeerCred): Promise<NetworkStatus>;
  /** Delete a user network (its owner or root): down first, then its record, subnet and files; EBUSY with taps unless `force`. */
  delete(name: string, caller: PeerCred, opts?: { force?: boolean }): Promise<void>;
  /**
   * Apply the edited definition of one running network (or of every one) without taking it down
   * where the kernel allows; a change that cannot apply live is refused (ENOTLIVE) naming the key.
   * Needs an admin caller.
   */
  reload(name: string | undefined, caller: PeerCred): Promise<ReloadResult[]>;
  /** Create a tap on `bridge` for the caller; brings an on-demand network up first. */
  tap(bridge: string, opts: { vnetHdr: boolean }, caller: PeerCred): Promise<TapResult>;
  /**
   * Forward `req.hostPort` on the host's addresses to a guest of network `name`; kept across
   * restarts, applied while the network is up. Refused (EADDRINUSE) when another forward or a
   * local listener holds the port, (EINVAL) for a guest outside the network. Needs an admin caller.
   */
  addPortForward(name: string, req: PortForwardRequest, caller: PeerCred): Promise<PortForwardInfo>;
  /** Remove a forward `addPortForward` made. Needs an admin caller. */
  removePortForward(name: string, proto: 'tcp' | 'udp', hostPort: number, caller: PeerCred): Promise<void>;
  /** The forwards of one network, or (name undefined) of every network. */
  listPortForwards(name: string | undefined): Promise<PortForwardInfo[]>;
  /** Subscribe to events; returns an unsubscribe function. */
  subscribe(listener: (e: ServiceEvent) => void): () => void;
}

/** What status says about a network, from its spec and (when it has one) its runtime record. */
export function statusOf(spec: NetworkSpec, r: Readonly<NetworkRecord> | undefined, taps: readonly TapInfo[], leases: number, leasesProblem?: string): NetworkStatus {
  const v4 = primary4(spec);
  const s: NetworkStatus = {
    name: spec.name,
    bridge: spec.bridge.name,
    state: r?.state ?? 'down',
    subnet: v4?.cidr ?? '',
    address: v4?.address ?? '',
    addresses: spec.addresses.map((a) => `${a.address}/${a.prefix}`),
    forward: spec.forward.mode,
    onDemand: spec.lifecycle.onDemand,
    pinned: r?.pinned ?? false,
    leases,
    taps: taps.map((t) => ({ name: t.name, ifindex: t.ifindex, uid: t.uid, pid: t.pid })),
    source: spec.source,
  };
  if (r?.reason) s.reason = r.reason;
  if (r?.conflict) s.conflict = { subnet: r.conflict.subnet, interface: r.conflict.interface, detail: r.conflict.detail };
  if (leasesProblem) s.leasesProblem = leasesProblem;
  if (spec.owner.kind === 'user') s.owner = { uid: spec.owner.uid, user: spec.owner.user, allowUsers: [...(spec.access.allowUsers ?? [])] };
  return s;
}
