/**
 * Leases in pages, for replies that must fit a bounded message: a socket frame (64 KiB), a
 * D-Bus message. The order is by IPv4 address (numerically), then MAC, one lease per pair; then
 * the DHCPv6 leases, by IPv6 address the same way. A cursor names the last lease of a page,
 * "IP/MAC" (a DHCPv6 lease's MAC may be ""); the next page starts after that position.
 * So a cursor stays meaningful while leases come and go: a client paging through sees each
 * lease that lives throughout exactly once, in order, and never one twice.
 */
import { MAX_FRAME } from '../api/protocol.js';
import type { Lease } from '../model.js';
import { isHwAddr, isIpv4, isIpv6, MAX_LEASES } from './leases.js';

export interface LeasePage {
  leases: Lease[];
  /** the cursor for the next page; null on the last page */
  next: string | null;
}

/**
 * A page request as a client sent it (checked here: adapters pass the values on unchecked).
 * after: a cursor from a previous page, or absent / null / "" for the first page;
 * limit: at most this many leases, an integer 1..MAX_LEASES (absent: as many as fit).
 */
export interface LeaseQuery {
  after?: unknown;
  limit?: unknown;
  /** encoded size the page must stay within, as JSON bytes of its lease array (default SOCKET_PAGE_BYTES) */
  maxBytes?: number;
}

/** A bad cursor or limit; the message names what was wrong. */
export class LeaseQueryError extends Error {
  override name = 'LeaseQueryError';
}

/**
 * JSON bytes of the lease array of a page that goes out in one socket frame: the frame also
 * carries `{"id":…,"ok":true,"result":{"leases":…,"next":"IP/MAC"}}`, under 200 bytes.
 */
export const SOCKET_PAGE_BYTES = MAX_FRAME - 1024;

const MAX_CURSOR = 100;

interface Cursor {
  /** IPv4: the address as a number; IPv6: -1 (they come after every IPv4 lease) */
  ip: number;
  /** IPv6: the address as 32 hex digits; IPv4: "" */
  ip6: string;
  mac: string;
}

/** "fd00:1::5" → 32 hex digits, which sort as the addresses do (checked addresses only). */
function hex6(ip: string): string {
  let text = ip;
  const dot = text.lastIndexOf('.');
  if (dot >= 0) {
    // an embedded IPv4 address: its two groups in hex
    const colon = text.lastIndexOf(':');
    const n = ipNumber(text.slice(colon + 1));
    text = `${text.slice(0, colon + 1)}${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.map((g) => g.toLowerCase().padStart(4, '0')).join('');
}

const isV6 = (l: Lease) => l.ip.includes(':');

/** Where a lease stands in page order, against a cursor: negative before, 0 at, positive after. */
function comparePosition(l: Lease, c: Cursor): number {
  if (isV6(l) !== c.ip < 0) return isV6(l) ? 1 : -1;
  const byIp = c.ip < 0 ? compareText(hex6(l.ip), c.ip6) : ipNumber(l.ip) - c.ip;
  return byIp || compareText(l.mac, c.mac);
}

/** A checked dotted quad as a number (a loop over its characters: this runs for every lease). */
function ipNumber(ip: string): number {
  let n = 0;
  let octet = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46) {
      n = n * 256 + octet;
      octet = 0;
    } else {
      octet = octet * 10 + (c - 48);
    }
  }
  return n * 256 + octet;
}

const compareText = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

export function cursorOf(lease: Lease): string {
  return `${lease.ip}/${lease.mac}`;
}

function parseCursor(value: unknown): Cursor | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw new LeaseQueryError(`\`after\` must be a cursor string from a previous page, got ${typeof value}`);
  const slash = value.indexOf('/');
  const ip = value.slice(0, slash);
  const mac = value.slice(slash + 1);
  const v6 = slash >= 0 && isIpv6(ip) && (mac === '' || isHwAddr(mac));
  if (value.length > MAX_CURSOR || slash < 0 || (!v6 && (!isIpv4(ip) || !isHwAddr(mac))))
    throw new LeaseQueryError(`\`after\` = ${JSON.stringify(value.slice(0, MAX_CURSOR))} is not a cursor ("IP/MAC", as \`next\` of a previous page)`);
  return v6 ? { ip: -1, ip6: hex6(ip), mac: mac.toLowerCase() } : { ip: ipNumber(ip), ip6: '', mac: mac.toLowerCase() };
}

function parseLimit(value: unknown): number {
  if (value === undefined || value === null) return MAX_LEASES;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_LEASES) {
    const got = typeof value === 'number' ? String(value) : typeof value === 'string' ? JSON.stringify(value.slice(0, 20)) : typeof value;
    throw new LeaseQueryError(`\`limit\` must be an integer from 1 to ${MAX_LEASES}, got ${got}`);
  }
  return value;
}

/** Index bits of the sort keys below: keys are ip * 2^21 + index, exact in a double. */
const INDEX_BITS = 2 ** 21;

/**
 * The leases in page order: by address, then MAC; of several lines with the same address and
 * MAC the last one counts (the file's later line). Sorts numbers, not objects, so 65,535 leases
 * take milliseconds.
 */
export function sortLeases(all: readonly Lease[]): Lease[] {
  const leases = all.some(isV6) ? all.filter((l) => !isV6(l)) : all;
  const out = sortLeases4(leases);
  if (leases !== all) out.push(...sortLeases6(all.filter(isV6)));
  return out;
}

/** DHCPv6 leases (few: no numeric keys needed): by address, then MAC; the file's later line wins. */
function sortLeases6(leases: readonly Lease[]): Lease[] {
  const last = new Map<string, Lease>();
  for (const l of leases) {
    const k = `${hex6(l.ip)}/${l.mac}`;
    last.delete(k);
    last.set(k, l);
  }
  return [...last].sort(([a], [b]) => compareText(a, b)).map(([, l]) => l);
}

function sortLeases4(leases: readonly Lease[]): Lease[] {
  const n = leases.length;
  if (n >= INDEX_BITS) throw new RangeError(`cannot order ${n} leases (at most ${INDEX_BITS - 1})`);
  const keys = new Float64Array(n);
  for (let i = 0; i < n; i++) keys[i] = ipNumber(leases[i]!.ip) * INDEX_BITS + i;
  keys.sort();
  const out: Lease[] = [];
  for (let i = 0; i < n; ) {
    const ip = Math.floor(keys[i]! / INDEX_BITS);
    let j = i + 1;
    while (j < n && Math.floor(keys[j]! / INDEX_BITS) === ip) j++;
    if (j === i + 1) {
      out.push(leases[keys[i]! % INDEX_BITS]!);
    } else {
      // same address more than once: by MAC, the last line of each MAC (keys run in file order)
      const byMac = new Map<string, Lease>();
      for (let k = i; k < j; k++) {
        const l = leases[keys[k]! % INDEX_BITS]!;
        byMac.delete(l.mac);
        byMac.set(l.mac, l);
      }
      out.push(...[...byMac.values()].sort((a, b) => compareText(a.mac, b.mac)));
    }
    i = j;
  }
  return out;
}

/** Index of the first lease after the cursor in sorted leases (binary search). */
function firstAfter(sorted: readonly Lease[], c: Cursor): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const l = sorted[mid]!;
    if (comparePosition(l, c) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** printable ASCII that JSON writes as it is (no quote, no backslash) */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/** Bytes of a string in JSON, quotes included; counted, not encoded, in the common case. */
function jsonStringBytes(s: string): number {
  return PLAIN.test(s) ? s.length + 2 : Buffer.byteLength(JSON.stringify(s));
}

/** Bytes of one lease in a JSON array: `{"expires":…,"mac":"…","ip":"…","hostname":"…","clientId":"…"}` (and `,"iaid":"…"`). */
export function leaseJsonBytes(lease: Lease): number {
  return (
    (lease.iaid !== undefined ? ',"iaid":'.length + jsonStringBytes(lease.iaid) : 0) +
    '{"expires":,"mac":,"ip":,"hostname":,"clientId":}'.length +
    String(lease.expires).length +
    jsonStringBytes(lease.mac) +
    jsonStringBytes(lease.ip) +
    jsonStringBytes(lease.hostname) +
    jsonStringBytes(lease.clientId)
  );
}

/** Check a query before any work: throws LeaseQueryError naming the bad value. */
export function checkLeaseQuery(q: LeaseQuery): void {
  parseCursor(q.after);
  parseLimit(q.limit);
}

/**
 * One page of sorted leases (see sortLeases): those after `q.after`, at most `q.limit`, cut
 * where the next lease would take the page's JSON array past `q.maxBytes`.
 */
export function pageLeases(sorted: readonly Lease[], q: LeaseQuery = {}): LeasePage {
  const after = parseCursor(q.after);
  const limit = parseLimit(q.limit);
  const maxBytes = q.maxBytes ?? SOCKET_PAGE_BYTES;
  let i = after ? firstAfter(sorted, after) : 0;
  const leases: Lease[] = [];
  let bytes = 2; // []
  for (; i < sorted.length && leases.length < limit; i++) {
    const size = leaseJsonBytes(sorted[i]!) + (leases.length > 0 ? 1 : 0);
    if (bytes + size > maxBytes) {
      if (leases.length === 0) throw new RangeError(`one lease takes ${size} bytes, more than a page of ${maxBytes}`);
      break;
    }
    bytes += size;
    leases.push(sorted[i]!);
  }
  return { leases, next: i < sorted.length ? cursorOf(leases[leases.length - 1]!) : null };
}

/** per lease list: its live count, right from `from` until the next expiry `until` (seconds) */
const liveMemo = new WeakMap<readonly Lease[], { count: number; from: number; until: number }>();

/**
 * Leases that have not expired at `nowSeconds` (0 = never expires). Counted once per list
 * until the next of its leases expires: status asks on every lease event, and a list may hold
 * 65,535 leases.
 */
export function liveLeaseCount(leases: readonly Lease[], nowSeconds: number): number {
  const memo = liveMemo.get(leases);
  if (memo && nowSeconds >= memo.from && nowSeconds < memo.until) return memo.count;
  let count = 0;
  let until = Infinity;
  for (const l of leases) {
    if (l.expires !== 0 && l.expires <= nowSeconds) continue;
    count++;
    if (l.expires !== 0 && l.expires < until) until = l.expires;
  }
  liveMemo.set(leases, { count, from: nowSeconds, until });
  return count;
}
