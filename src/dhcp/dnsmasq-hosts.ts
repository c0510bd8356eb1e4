/**
 * dnsmasq lines of `[[hosts]]` and the lease time: one `dhcp-host=` a host, by MAC (or, without
 * one, by the name the guest sends), with its fixed addresses (an IPv6 one in brackets), its name
 * (which dnsmasq also answers in DNS) and its own lease time. Pure text.
 */
import { isIPv6 } from 'node:net';
import type { NetworkSpec } from '../spec/spec.js';
import { dnsName, hostName, ipAddress, macAddress, uint } from './dnsmasq-values.js';

/** The lease time written when the definition gives none. */
export const DEFAULT_LEASE_TIME = '1h';

/** Seconds → dnsmasq's lease time ("infinite" for 0); undefined → one hour. */
export function leaseTimeText(seconds: number | undefined, key = 'dhcp-lease-time'): string {
  if (seconds === undefined) return DEFAULT_LEASE_TIME;
  const s = uint(key, seconds, 4294967295);
  return s === 0 ? 'infinite' : String(s);
}

export function hostLines(net: NetworkSpec): string[] {
  return [...dhcpHostLines(net), ...hostRecordLines(net)];
}

/**
 * A named host's addresses in DNS from the start, as NAME and NAME.DOMAIN: dnsmasq answers the
 * names of `dhcp-host=` lines only to some askers (not the host's own resolver, for one) and not
 * under the domain before a lease. A guest sending the same name for another address then does
 * not get it (dnsmasq refuses a DHCP name that a host record holds).
 */
function hostRecordLines(net: NetworkSpec): string[] {
  const domain = net.dns.domain;
  return (net.dhcp.hosts ?? []).flatMap((h, i) => {
    if (h.name === undefined || net.dns.off) return [];
    const name = hostName(`hosts[${i}].name`, h.name);
    const names = domain && !name.includes('.') ? [name, dnsName('domain', `${name}.${domain}`)] : [name];
    return [`host-record=${[...names, ...h.ips.map((ip) => ipAddress(`hosts[${i}].ip`, ip))].join(',')}`];
  });
}

function dhcpHostLines(net: NetworkSpec): string[] {
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
