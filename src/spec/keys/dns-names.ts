/**
 * Values the DHCP and DNS keys share: host names, MAC addresses and lease times. A name must also
 * be one dnsmasq cannot read as something else: in `dhcp-host=` a field "3600", "1h", "infinite" or
 * "ignore" is a lease time or a keyword, and in `host-record=` a number is a TTL. Definitions may
 * come from an import of somebody's libvirt XML, so such names are refused, not passed on.
 */
import { domainProblem } from '../../config/names.js';
import { int } from './section.js';

/** Why `v` cannot be a host name in DNS or DHCP, or undefined. */
export function hostNameProblem(v: unknown): string | undefined {
  const p = domainProblem(v);
  if (p) return p;
  const s = v as string;
  if (/^[0-9]+[smhdw]?$/i.test(s) || /^(infinite|ignore)$/i.test(s)) return 'reads as a lease time, TTL or keyword to dnsmasq; use a name with letters';
  if (/^([0-9a-f]{1,2}-)+[0-9a-f]{1,2}$/i.test(s)) return 'reads as a hardware address to dnsmasq; use another name';
  return undefined;
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/** A guest's MAC address, lower case; a problem when malformed, multicast or all zeros. */
export function parseMac(v: unknown): string | { problem: string } {
  if (typeof v !== 'string' || !MAC.test(v)) return { problem: 'is not a MAC address such as "52:54:00:12:34:56"' };
  const mac = v.toLowerCase();
  if (parseInt(mac.slice(0, 2), 16) & 1) return { problem: 'is a multicast address, which no network card has' };
  if (mac === '00:00:00:00:00:00') return { problem: 'is all zeros' };
  return mac;
}

/** dnsmasq's and libvirt's shortest lease: 2 minutes */
export const MIN_LEASE = 120;
const MAX_LEASE = 4294967295;

/** Lease time in seconds: 0 (infinite, as libvirt writes it) or 120..2^32-1. */
export function parseLeaseTime(v: unknown): number | string {
  const n = int(v, 0, MAX_LEASE);
  if (typeof n === 'string' || (n !== 0 && n < MIN_LEASE)) return `expected seconds, ${MIN_LEASE}..${MAX_LEASE} (e.g. 3600 for an hour), or 0 for leases that never expire`;
  return n;
}
