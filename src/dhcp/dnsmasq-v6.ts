/**
 * The IPv6 lines of a network's dnsmasq config: router advertisements for every `address6`
 * subnet (SLAAC, with stateless DHCPv6 for DNS), and stateful DHCPv6 on the subnet that holds
 * `dhcp6-range`. Pure text; every value is checked again here, as in dnsmasq.ts, because
 * dnsmasq's parser gives meaning to commas, quotes and newlines.
 */
import { contains, isAddress, subnetOf } from '../net/ip.js';
import { addressesOf, type NetworkSpec } from '../spec/spec.js';
import { DnsmasqConfigError } from './dnsmasq.js';

/** Lease time of DHCPv6 leases and of the prefixes advertised (as the IPv4 leases). */
export const LEASE_TIME6 = '1h';

/** A canonical IPv6 address (as the spec holds it): hex digits, colons and nothing else. */
function ipv6(key: string, value: unknown): string {
  if (typeof value !== 'string' || !/^[0-9a-f:]{2,39}$/.test(value) || !isAddress(value, 6)) throw new DnsmasqConfigError(key, value, 'is not an IPv6 address');
  return value;
}

function prefixLength(key: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 128) throw new DnsmasqConfigError(key, value, 'must be 1..128');
  return value;
}

/**
 * The IPv6 lines for `net` on `bridge` (an interface name already checked), or none when the
 * network has no IPv6 address. `leaseLines` are the lease file and lease limit lines the caller
 * writes with a DHCPv4 range: without one, they are written here.
 */
export function dnsmasqV6Lines(net: NetworkSpec, bridge: string, leaseLines: () => string[]): string[] {
  const v6 = addressesOf(net, 6);
  const range = net.dhcp.range6;
  // a bridge vnet does not own is somebody's LAN: no router advertisements there unless DHCPv6 is asked for
  if (!v6.length || (net.forward.mode === 'bridge' && !range)) return [];
  const lines = ['enable-ra'];
  // an isolated network routes nowhere: advertise the prefixes but not the host as a default router
  if (net.forward.mode === 'isolated') lines.push(`ra-param=${bridge},600,0`);
  for (const [i, a] of v6.entries()) {
    const network = ipv6(`address6[${i}].network`, a.network);
    const len = prefixLength(`address6[${i}].prefix`, a.prefix);
    const holdsRange = range !== undefined && contains(subnetOf(a), range.start) && contains(subnetOf(a), range.end);
    if (holdsRange) lines.push(`dhcp-range=${ipv6('dhcp6Range.start', range.start)},${ipv6('dhcp6Range.end', range.end)},${len},${LEASE_TIME6}`);
    // SLAAC: prefix information in the RA; "stateless": dnsmasq still answers information requests (DNS)
    else lines.push(`dhcp-range=${network},ra-stateless,${len},${LEASE_TIME6}`);
  }
  if (range && !net.dhcp.range4) lines.push(...leaseLines());
  return lines;
}
