/**
 * The backends the reconciler observes and changes the host through, as interfaces given to its
 * constructor: the real ones (netlink, nft, /proc/sys, dnsmasq) in vnetd, fakes in fast tests.
 */
import type { DhcpConfig } from '../desired/model.js';
import type { LinkDns } from '../hostdns/resolved-api.js';
import type { TableState, Transaction } from '../firewall/table.js';
import type { Link, LinkAddress, LinkChange, Route } from '../netlink/rtnl.js';
import type { ForwardMode } from '../spec/spec.js';

export interface LinkBackend {
  listLinks(): Promise<Link[]>;
  getLinkByName(name: string): Promise<Link | undefined>;
  listAddresses(): Promise<LinkAddress[]>;
  listRoutes(): Promise<Route[]>;
  createBridge(name: string, opts: { mtu?: number; mac?: string }): Promise<Link>;
  deleteLink(index: number): Promise<void>;
  configureLink(index: number, change: LinkChange): Promise<void>;
  addAddress(index: number, address: string, prefix: number): Promise<void>;
  delAddress(index: number, address: string, prefix: number): Promise<void>;
}

/** vnet's own nft table. */
export interface FirewallBackend {
  list(): Promise<TableState>;
  apply(tx: Transaction): Promise<void>;
}

/** /proc/sys, by dotted key; read gives undefined when the key does not exist. */
export interface SysctlBackend {
  read(key: string): Promise<string | undefined>;
  write(key: string, value: string): Promise<void>;
}

/** The DHCP/DNS servers, one per network. */
export interface DhcpBackend {
  /** running servers by network, with the configuration each was started with */
  running(): Map<string, DhcpConfig>;
  start(config: DhcpConfig): Promise<void>;
  stop(network: string): Promise<void>;
}

/**
 * A firewall vnet does not own (firewalld's zones, Docker's chain) that must be told to let a
 * network's traffic pass: vnet's own table cannot override another table's reject. Each is bound
 * per bridge while the network is up, unbound when it goes, and rebound after it reloads.
 */
export interface HostFirewall {
  readonly name: string;
  /** the bridges it lets through now, as it says itself */
  bound(): Promise<ReadonlySet<string>>;
  bind(bridge: string, mode: ForwardMode): Promise<void>;
  unbind(bridge: string): Promise<void>;
  /** call `changed` when it reloaded or restarted (its bindings may be gone); returns a stop function */
  watch?(changed: () => void): () => void;
}

/**
 * The host's own resolver (systemd-resolved), told per bridge (by ifindex) which DNS server answers
 * which domain, so that the host resolves guest names too. state() is undefined where no such
 * resolver runs: then nothing is planned.
 */
export interface HostDns {
  readonly name: string;
  /** the resolver runs (and so a bridge about to be made can be registered) */
  available(): Promise<boolean>;
  state(index: number): Promise<LinkDns | undefined>;
  register(index: number, dns: LinkDns): Promise<void>;
  revert(index: number): Promise<void>;
}

export interface Backends {
  links: LinkBackend;
  firewall: FirewallBackend;
  sysctl: SysctlBackend;
  dhcp: DhcpBackend;
  /** firewalls beside vnet's own table (none when the host runs none) */
  hostFirewalls?: readonly HostFirewall[];
  /** the host's resolver (none: the host does not learn guest names) */
  hostDns?: HostDns;
}
