/**
 * desired(): the state the host should hold for these networks at these levels, assembled from
 * the contributors in order. Pure.
 */
import type { NetworkSpec } from '../spec/spec.js';
import type { Contributor, Desired, DesiredNetwork, Level } from './model.js';
import { addresses } from './contributors/addresses.js';
import { dhcp, type DhcpContext } from './contributors/dhcp.js';
import { firewall, hostFirewall } from './contributors/firewall.js';
import { forwarding } from './contributors/forwarding.js';
import { hostDns } from './contributors/host-dns.js';
import { link } from './contributors/link.js';

export interface Target {
  spec: NetworkSpec;
  level: Level;
}

/** The contributors vnetd runs, in the order their steps should apply. */
export function contributors(ctx: DhcpContext): Contributor[] {
  // host-dns after dhcp: it follows the DNS server that contributor gives the network
  return [link, addresses, firewall, hostFirewall, forwarding, dhcp(ctx), hostDns];
}

export function desired(targets: Iterable<Target>, parts: readonly Contributor[]): Desired {
  const out: Desired = { networks: new Map(), sysctls: [], interfaceSysctls: [] };
  for (const { spec, level } of targets) {
    const n: DesiredNetwork = { name: spec.name, spec, level, addresses: [], linkSysctls: [], hostFirewall: false };
    for (const c of parts) c.network?.(n);
    out.networks.set(spec.name, n);
  }
  const all = [...out.networks.values()];
  for (const c of parts) c.host?.(all, out);
  return out;
}
