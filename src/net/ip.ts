/**
 * The one IP module: IPv4 and IPv6 addresses, prefixes and subnets, on ipaddr.js. Every
 * layer that needs address math (definitions, conflicts, the firewall, dnsmasq, netlink
 * encoding) uses these, so an address means the same thing everywhere.
 */
import ipaddr from 'ipaddr.js';

export type Family = 4 | 6;

/** A host address with its prefix on an interface: 192.168.122.1/24, fd00:1::1/64. */
export interface IfAddress {
  family: Family;
  /** canonical text of the host address ("192.168.122.1", "fd00:1::1") */
  address: string;
  prefix: number;
  /** canonical text of the network address ("192.168.122.0", "fd00:1::") */
  network: string;
  /** "192.168.122.0/24" */
  cidr: string;
}

/** A subnet without a host part: what routes and overlaps are about. */
export interface Subnet {
  family: Family;
  network: string;
  prefix: number;
}

type Addr = ipaddr.IPv4 | ipaddr.IPv6;

const bits = (f: Family) => (f === 4 ? 32 : 128);

/** Parse an address of either family strictly (no IPv4-mapped tricks, no "1" for "0.0.0.1"). */
export function parseAddress(text: string): { family: Family; addr: Addr } | undefined {
  if (typeof text !== 'string') return undefined;
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return { family: 4, addr: ipaddr.IPv4.parse(text) };
  if (text.includes(':') && ipaddr.IPv6.isValid(text) && !text.includes('%')) {
    const addr = ipaddr.IPv6.parse(text);
    return { family: 6, addr };
  }
  return undefined;
}

/** Canonical text of an address ("fd00:0001::0001" → "fd00:1::1"); undefined when not an address. */
export function canonical(text: string): string | undefined {
  return parseAddress(text)?.addr.toString();
}

export function isAddress(text: string, family?: Family): boolean {
  const p = parseAddress(text);
  return p !== undefined && (family === undefined || p.family === family);
}

function networkOf(addr: Addr, prefix: number): Addr {
  const bytes = addr.toByteArray();
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    bytes[i]! &= (0xff << (8 - keep)) & 0xff;
  }
  return ipaddr.fromByteArray(bytes);
}

/** address/prefix → IfAddress; undefined when malformed. No policy (see ifAddressProblem). */
export function parseIfAddress(text: string): IfAddress | undefined {
  if (typeof text !== 'string') return undefined;
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const p = parseAddress(text.slice(0, slash));
  const len = text.slice(slash + 1);
  if (!p || !/^(0|[1-9][0-9]{0,2})$/.test(len)) return undefined;
  const prefix = Number(len);
  if (prefix > bits(p.family)) return undefined;
  return make(p.family, p.addr, prefix);
}

function make(family: Family, addr: Addr, prefix: number): IfAddress {
  const network = networkOf(addr, prefix).toString();
  return { family, address: addr.toString(), prefix, network, cidr: `${network}/${prefix}` };
}

/** "192.168.122.0/24" → Subnet (host bits must be zero); undefined when malformed. */
export function parseSubnet(text: string): Subnet | undefined {
  const a = parseIfAddress(text);
  if (!a || a.address !== a.network) return undefined;
  return { family: a.family, network: a.network, prefix: a.prefix };
}

export function subnetOf(a: IfAddress): Subnet {
  return { family: a.family, network: a.network, prefix: a.prefix };
}

export function cidrOf(s: Subnet): string {
  return `${s.network}/${s.prefix}`;
}

/** Is `address` inside `subnet`? Different families never are. */
export function contains(subnet: Subnet, address: string): boolean {
  const p = parseAddress(address);
  if (!p || p.family !== subnet.family) return false;
  return p.addr.match(ipaddr.parse(subnet.network), subnet.prefix);
}

/** Do two subnets share any address? (One contains the other; different families never do.) */
export function overlaps(a: Subnet, b: Subnet): boolean {
  if (a.family !== b.family) return false;
  const p = Math.min(a.prefix, b.prefix);
  return ipaddr.parse(a.network).match(ipaddr.parse(b.network), p);
}

/** A subnet with its address parsed once: for comparing one against many (overlaps() parses on every call). */
export interface ParsedSubnet extends Subnet {
  addr: Addr;
}

export function parsedSubnet(s: Subnet): ParsedSubnet {
  return { ...s, addr: ipaddr.parse(s.network) };
}

/** overlaps() of two parsed subnets. */
export function overlapsParsed(a: ParsedSubnet, b: ParsedSubnet): boolean {
  if (a.family !== b.family) return false;
  return (a.addr as ipaddr.IPv4).match(b.addr as ipaddr.IPv4, Math.min(a.prefix, b.prefix));
}

/** The directed broadcast of an IPv4 subnet ("192.168.122.255"); undefined for /31, /32 and IPv6. */
export function broadcastOf(s: Subnet): string | undefined {
  if (s.family !== 4 || s.prefix >= 31) return undefined;
  return ipaddr.IPv4.broadcastAddressFromCIDR(cidrOf(s)).toString();
}

/** Address as a bigint, for ordering and ranges. */
export function toBigInt(address: string): bigint {
  const p = parseAddress(address);
  if (!p) throw new RangeError(`${JSON.stringify(address)} is not an IP address`);
  let n = 0n;
  for (const b of p.addr.toByteArray()) n = (n << 8n) | BigInt(b);
  return n;
}

export function fromBigInt(n: bigint, family: Family): string {
  const len = family === 4 ? 4 : 16;
  const bytes: number[] = [];
  for (let i = len - 1; i >= 0; i--) bytes[i] = Number((n >> BigInt((len - 1 - i) * 8)) & 0xffn);
  return ipaddr.fromByteArray(bytes).toString();
}

/** Compare two addresses of one family numerically (-1, 0, 1). */
export function compare(a: string, b: string): number {
  const x = toBigInt(a);
  const y = toBigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** The address `n` after `address` (n may be negative). */
export function offset(address: string, n: number): string {
  const p = parseAddress(address);
  if (!p) throw new RangeError(`${JSON.stringify(address)} is not an IP address`);
  return fromBigInt(toBigInt(address) + BigInt(n), p.family);
}

/** The raw bytes of an address (4 or 16), for netlink. */
export function toBytes(address: string): Buffer {
  const p = parseAddress(address);
  if (!p) throw new RangeError(`${JSON.stringify(address)} is not an IP address`);
  return Buffer.from(p.addr.toByteArray());
}

export function fromBytes(buf: Buffer): string {
  if (buf.length !== 4 && buf.length !== 16) throw new RangeError(`an IP address is 4 or 16 bytes, got ${buf.length}`);
  return ipaddr.fromByteArray([...buf]).toString();
}

/** The ipaddr.js range name ("private", "uniqueLocal", "loopback", ...). */
export function rangeOf(address: string): string {
  const p = parseAddress(address);
  return p ? p.addr.range() : 'invalid';
}

/**
 * Why an interface address cannot be a vnet bridge's own address, or undefined. IPv4: prefix
 * 8..30, not the network or broadcast address; IPv6: prefix 48..126 (64 for SLAAC), a unicast
 * address that is not link-local, loopback or multicast; and not the subnet-router anycast address.
 */
export function bridgeAddressProblem(a: IfAddress): string | undefined {
  const range = rangeOf(a.address);
  if (a.family === 4) {
    if (a.prefix < 8 || a.prefix > 30) return `prefix length must be 8..30 (a /31 or /32 leaves no room for guests), got /${a.prefix}`;
    if (a.address === a.network) return `${a.address} is the network address of /${a.prefix}; use a host address such as ${offset(a.network, 1)}`;
    if (a.address === broadcastOf(subnetOf(a))) return `${a.address} is the broadcast address of /${a.prefix}`;
    if (['unspecified', 'loopback', 'multicast', 'broadcast', 'linkLocal'].includes(range) || contains({ family: 4, network: '240.0.0.0', prefix: 4 }, a.address))
      return `${a.address} is a ${range} address, not usable for a bridge`;
    return undefined;
  }
  if (a.prefix < 48 || a.prefix > 126) return `IPv6 prefix length must be 48..126 (64 for SLAAC), got /${a.prefix}`;
  if (a.address === a.network) return `${a.address} is the subnet-router anycast address of /${a.prefix}; use a host address such as ${offset(a.network, 1)}`;
  if (['unspecified', 'loopback', 'multicast', 'linkLocal', 'ipv4Mapped'].includes(range))
    return `${a.address} is a ${range} address, not usable for a bridge`;
  return undefined;
}

/** Is this IPv6 address a unique local address (fc00::/7)? NAT66 is only offered for those. */
export function isUniqueLocal(address: string): boolean {
  return rangeOf(address) === 'uniqueLocal';
}

/** IPv4 prefix → dotted mask (24 → "255.255.255.0"). */
export function prefixToMask(prefix: number): string {
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > 32) throw new RangeError(`IPv4 prefix ${prefix} is not 0..32`);
  const b = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return [24, 16, 8, 0].map((s) => (b >>> s) & 0xff).join('.');
}
