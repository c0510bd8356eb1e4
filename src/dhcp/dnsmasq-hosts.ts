/**
 * dnsmasq lines of `[[hosts]]` and the lease time: one `dhcp-host=` a host, by MAC (or, without
 * one, by the name the guest sends), with its fixed addresses (an IPv6 one in brackets), its name
 * (which dnsmasq also answers in DNS) and its own lease time. Pure text.
 */
import { isIPv6 } from 'node:net';
import type { NetworkSpec } from '../spec/spec.js';
import { hostName, ipAddress, macAddress, uint } from './dnsmasq-values.js';

/** The lease time written when the definition gives none. */
export const DEFAULT_LEASE_TIME = '1h';

/** Seconds → dnsmasq's lease time ("infinite" for 0); undefined → one hour. */
export function leaseTimeText(seconds: number | undefined, key = 'dhcp-lease-time'): string {
  if (seconds === undefined) return DEFAULT_LEASE_TIME;
  const s = uint(key, seconds, 4294967295);
  return s === 0 ? 'infinite' : String(s);
}

export function hostLines(net: NetworkSpec): string[] {
  return (net.dhcp.hosts ?? []).map((h, i) => {
    const at = `hosts[${i}]`;
    const fields: string[] = [];
    if (h.mac !== undefined) fields.push(macAddress(`${at}.mac`, h.mac));
    for (const ip of h.ips) {
      const a = ipAddress(`${at}.ip`, ip);
      fields.push(isIPv6(a) ? `[${a}]` : a);
    }
    if (h.name !== undefined) fields.push(hostName(`${at}.name`, h.name));
    if (h.mac === undefined && h.name === undefined) throw new Error(`${at}: neither mac nor name`);
    if (h.leaseTime !== undefined) fields.push(leaseTimeText(h.leaseTime, `${at}.dhcp-lease-time`));
    return `dhcp-host=${fields.join(',')}`;
  });
}
