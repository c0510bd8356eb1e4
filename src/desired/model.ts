/**
 * What the host should hold, as data: per network, the bridge, its addresses, its link
 * sysctls, its firewall part and its DHCP/DNS server; globally, the sysctls networks share.
 * Built by contributors (one per feature) from specs and the level each network should be at.
 */
import type { Part } from '../firewall/table.js';
import type { LinkDns } from '../hostdns/resolved-api.js';
import type { IfAddress } from '../net/ip.js';
import type { NetworkSpec } from '../spec/spec.js';

/** How far up a network should be: nothing, its stub (an UP bridge alone), or fully up. */
export type Level = 'down' | 'stub' | 'up';

export interface DesiredBridge {
  name: string;
  /** vnet creates (and deletes) it; false for an existing bridge it only uses */
  managed: boolean;
  mac: string;
  mtu?: number;
}

/** A sysctl by its path under /proc/sys ("net/ipv4/ip_forward"; an interface name may hold dots). */
export interface Sysctl {
  key: string;
  value: string;
}

/** One DHCP/DNS server (dnsmasq) for one network. */
export interface DhcpConfig {
  network: string;
  /** the server's whole configuration text */
  text: string;
  confPath: string;
  leaseFile?: string;
}

export interface DesiredNetwork {
  name: string;
  spec: NetworkSpec;
  level: Level;
  bridge?: DesiredBridge;
  addresses: IfAddress[];
  /** sysctls of the bridge itself: they go with the link, nothing to restore */
  linkSysctls: Sysctl[];
  firewall?: Part;
  /** host firewalls (firewalld, Docker) must let the bridge's traffic through */
  hostFirewall: boolean;
  dhcp?: DhcpConfig;
  /** what the host's resolver should send to this network's DNS server (contributors/host-dns.ts) */
  hostDns?: LinkDns;
}

/**
 * A sysctl of every interface of the host (net/ipv6/conf/IF/NAME) that holds `from`: set to
 * `value` while wanted, and restored (journaled like `sysctls`) when not. Which interfaces
 * hold it is observed, so this stays data: desired() reads no host state.
 */
export interface InterfaceSysctl {
  /** the key under net/ipv6/conf/IF/ */
  name: string;
  from: string;
  value: string;
  /**
   * only while vnet itself changes this host-wide sysctl of `sysctls` (or changed it: journaled);
   * when it held the wanted value already, the host was set up so by its admin and is left alone
   */
  with?: string;
}

export interface Desired {
  networks: Map<string, DesiredNetwork>;
  /** host-wide sysctls some network needs; vnet restores what it changed when none does */
  sysctls: Sysctl[];
  /** per-interface sysctls of the host's own interfaces, set before `sysctls` */
  interfaceSysctls: InterfaceSysctl[];
}

/**
 * One feature's say in the desired state. `network` fills in its part of one network;
 * `host` derives host-wide wants from all networks. A new feature is a new contributor.
 */
export interface Contributor {
  readonly name: string;
  network?(n: DesiredNetwork): void;
  host?(networks: readonly DesiredNetwork[], out: Desired): void;
}
