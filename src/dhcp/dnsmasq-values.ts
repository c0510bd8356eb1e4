/**
 * Checks of the values the DHCP and DNS lines write into a dnsmasq config, again (definitions
 * arrive validated, see spec/keys/): dnsmasq's parser gives meaning to newlines, commas, quotes,
 * backslashes, " #" and to whole fields ("3600" is a lease time, "ignore" a keyword), and a
 * definition may come from an import of somebody else's libvirt XML. A value that fails throws
 * DnsmasqConfigError, so no config with it is ever written.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { DnsmasqConfigError } from './dnsmasq.js';

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
const UNSAFE = /[\s",\\#'`$/=]/;

function plain(key: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) throw new DnsmasqConfigError(key, value, 'must be a non-empty string');
  if (CONTROL.test(value)) throw new DnsmasqConfigError(key, value, 'contains a newline or control character');
  if (UNSAFE.test(value)) throw new DnsmasqConfigError(key, value, 'contains whitespace, a quote, a comma, "#", "$", "/", "=" or a backslash');
  return value;
}

export function ipAddress(key: string, value: unknown): string {
  const v = plain(key, value);
  if (!isIPv4(v) && !isIPv6(v)) throw new DnsmasqConfigError(key, value, 'is not an IPv4 or IPv6 address');
  return v;
}

const LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** A DNS name of letters, digits and "-" (with `underscore`, "_" too, as in "_ldap._tcp"). */
export function dnsName(key: string, value: unknown, opts: { underscore?: boolean } = {}): string {
  const v = plain(key, value);
  const labels = (opts.underscore ? v.replace(/_/g, 'x') : v).split('.');
  if (v.length > 253 || !labels.every((l) => LABEL.test(l))) throw new DnsmasqConfigError(key, value, 'is not a DNS domain name');
  return v;
}

/** A host name dnsmasq cannot read as a lease time, TTL, keyword or hardware address. */
export function hostName(key: string, value: unknown): string {
  const v = dnsName(key, value);
  if (/^[0-9]+[smhdw]?$/i.test(v) || /^(infinite|ignore)$/i.test(v) || /^([0-9a-f]{1,2}-)+[0-9a-f]{1,2}$/i.test(v))
    throw new DnsmasqConfigError(key, value, 'reads as a lease time, TTL, keyword or hardware address to dnsmasq');
  return v;
}

export function macAddress(key: string, value: unknown): string {
  const v = plain(key, value);
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(v)) throw new DnsmasqConfigError(key, value, 'is not a lower-case MAC address');
  return v;
}

export function uint(key: string, value: unknown, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > max) throw new DnsmasqConfigError(key, value, `must be an integer 0..${max}`);
  return value;
}

/**
 * TXT text, written inside double quotes: 1..255 printable ASCII characters. Inside quotes dnsmasq
 * takes commas and "#" as text, and reads `\"` and `\\` as a quote and a backslash; every other
 * backslash escape (\n, \t, ...) would make a control character, so each backslash is doubled.
 */
export function quotedText(key: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 255 || !/^[\x20-\x7e]*$/.test(value))
    throw new DnsmasqConfigError(key, value, 'must be 1..255 printable ASCII characters');
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}
