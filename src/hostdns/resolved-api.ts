/**
 * systemd-resolved's D-Bus API as vnet uses it (org.freedesktop.resolve1, see its manual
 * org.freedesktop.resolve1(5)), pure: how a link's DNS servers and domains are written and read.
 */
import { isIPv4 } from 'node:net';
import { fromBytes, toBytes } from '../net/ip.js';

export const RESOLVED = {
  name: 'org.freedesktop.resolve1',
  path: '/org/freedesktop/resolve1',
  manager: 'org.freedesktop.resolve1.Manager',
  link: 'org.freedesktop.resolve1.Link',
} as const;

const AF_INET = 2;
const AF_INET6 = 10;

/** What a link holds: its DNS servers, and its domains ("~lab.test" is a routing-only domain). */
export interface LinkDns {
  servers: string[];
  domains: string[];
}

/** What vnet registers for a network: its DNS server on the bridge, for names under its domain only. */
export function wanted(server: string, domain: string): LinkDns {
  return { servers: [server], domains: [`~${domain}`] };
}

export function sameDns(a: LinkDns, b: LinkDns): boolean {
  const key = (x: LinkDns) => JSON.stringify([[...x.servers].sort(), [...x.domains].sort()]);
  return key(a) === key(b);
}

/** SetLinkDNS's a(iay) */
export function serversBody(servers: readonly string[]): Array<[number, Buffer]> {
  return servers.map((s) => [isIPv4(s) ? AF_INET : AF_INET6, toBytes(s)]);
}

/** SetLinkDomains's a(sb): "~lab.test" → ["lab.test", true] (routing only) */
export function domainsBody(domains: readonly string[]): Array<[string, boolean]> {
  return domains.map((d) => (d.startsWith('~') ? [d.slice(1), true] : [d, false]));
}

/** The Link's DNS property, a(iay), as addresses; malformed entries are left out. */
export function parseServers(v: unknown): string[] {
  if (!Array.isArray(v)) return [];
  const out: string[] = [];
  for (const e of v) {
    if (!Array.isArray(e) || !Buffer.isBuffer(e[1])) continue;
    const [family, bytes] = e as [number, Buffer];
    if ((family === AF_INET && bytes.length === 4) || (family === AF_INET6 && bytes.length === 16)) out.push(fromBytes(bytes));
  }
  return out;
}

/** The Link's Domains property, a(sb), as "name" or "~name". */
export function parseDomains(v: unknown): string[] {
  if (!Array.isArray(v)) return [];
  return v.filter((e): e is [string, boolean] => Array.isArray(e) && typeof e[0] === 'string').map(([d, route]) => (route ? `~${d}` : d));
}
