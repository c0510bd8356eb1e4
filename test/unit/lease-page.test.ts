import { describe, expect, it } from 'vitest';
import { encodeFrame, MAX_FRAME } from '../../src/api/protocol.js';
import { MAX_LEASES } from '../../src/dhcp/leases.js';
import { cursorOf, leaseJsonBytes, LeaseQueryError, liveLeaseCount, pageLeases, SOCKET_PAGE_BYTES, sortLeases } from '../../src/dhcp/lease-page.js';
import type { Lease } from '../../src/model.js';

const hex2 = (n: number) => (n & 255).toString(16).padStart(2, '0');

/** Lease i on 10.20.0.0/15: a client id of `cidBytes` bytes, hex pairs with colons as dnsmasq writes it. */
function lease(i: number, cidBytes = 255): Lease {
  const host = i + 2;
  return {
    expires: 1795655430 + i,
    mac: `52:54:00:${hex2(i >> 16)}:${hex2(i >> 8)}:${hex2(i)}`,
    ip: `10.${20 + (host >> 16)}.${(host >> 8) & 255}.${host & 255}`,
    hostname: i % 7 === 0 ? `guest-${i}` : '',
    clientId: Array.from({ length: cidBytes }, (_, k) => hex2(i + k)).join(':'),
  };
}

/** Every page from the start, as a client follows them. */
function allPages(sorted: Lease[], q: { limit?: number; maxBytes?: number } = {}) {
  const pages = [];
  let after: string | null = null;
  do {
    const page = pageLeases(sorted, { ...q, after });
    pages.push(page);
    if (pages.length > sorted.length + 1) throw new Error(`paging does not end: cursor ${after} -> ${page.next}`);
    after = page.next;
  } while (after !== null);
  return pages;
}

describe('sortLeases', () => {
  it('orders by address as a number, then MAC; one lease per address and MAC, the later line', () => {
    const l = (ip: string, mac: string, hostname = '') => ({ expires: 0, ip, mac, hostname, clientId: '' });
    const sorted = sortLeases([
      l('10.0.0.10', '52:54:00:00:00:02'),
      l('10.0.0.9', '52:54:00:00:00:09'),
      l('10.0.0.10', '52:54:00:00:00:01', 'old'),
      l('9.255.255.255', '52:54:00:00:00:05'),
      l('10.0.0.10', '52:54:00:00:00:01', 'new'),
      l('10.0.1.0', '52:54:00:00:00:03'),
    ]);
    expect(sorted.map((x) => `${x.ip} ${x.mac} ${x.hostname}`)).toEqual([
      '9.255.255.255 52:54:00:00:00:05 ',
      '10.0.0.9 52:54:00:00:00:09 ',
      '10.0.0.10 52:54:00:00:00:01 new',
      '10.0.0.10 52:54:00:00:00:02 ',
      '10.0.1.0 52:54:00:00:00:03 ',
    ]);
  });
});

describe('pageLeases', () => {
  it('cuts pages of 255-byte client ids by encoded size: every page fits one frame, nearly full, and together they hold every lease once', () => {
    const sorted = sortLeases(Array.from({ length: 600 }, (_, i) => lease(599 - i)));
    const pages = allPages(sorted);
    expect(pages.length).toBeGreaterThan(5);
    for (const [n, page] of pages.entries()) {
      // the largest envelope a reply can have: the longest request id
      const frame = encodeFrame({ id: -Number.MAX_SAFE_INTEGER, ok: true, result: page });
      expect(frame.length - 4).toBeLessThanOrEqual(MAX_FRAME);
      if (n < pages.length - 1) {
        // cut where the next lease would not have fitted, not earlier
        const next = sorted[sorted.indexOf(page.leases.at(-1)!) + 1]!;
        expect(Buffer.byteLength(JSON.stringify(page.leases)) + 1 + leaseJsonBytes(next)).toBeGreaterThan(SOCKET_PAGE_BYTES);
      }
    }
    expect(pages.flatMap((p) => p.leases)).toEqual(sorted);
    expect(pages.at(-1)!.next).toBeNull();
  });

  it('a page that reaches the end has next null; a cursor past the end gives an empty last page', () => {
    const sorted = sortLeases(Array.from({ length: 10 }, (_, i) => lease(i, 4)));
    expect(pageLeases(sorted, { limit: 10 })).toEqual({ leases: sorted, next: null });
    expect(pageLeases(sorted, { limit: 9 }).next).toBe(cursorOf(sorted[8]!));
    expect(pageLeases(sorted, { after: cursorOf(sorted[8]!), limit: 5 })).toEqual({ leases: [sorted[9]], next: null });
    expect(pageLeases(sorted, { after: '10.99.0.0/00:00:00:00:00:00' })).toEqual({ leases: [], next: null });
    expect(pageLeases([], {})).toEqual({ leases: [], next: null });
  });

  it('honours limit, and the maximum lease count fits in pages of at most limit', () => {
    const sorted = sortLeases(Array.from({ length: 25 }, (_, i) => lease(i, 4)));
    const pages = allPages(sorted, { limit: 10 });
    expect(pages.map((p) => p.leases.length)).toEqual([10, 10, 5]);
    expect(pages.flatMap((p) => p.leases)).toEqual(sorted);
  });

  it('a cursor keeps its place while leases come and go: no lease twice, none that lived throughout missed', () => {
    const start = Array.from({ length: 30 }, (_, i) => lease(i * 2, 4)); // even hosts
    const first = pageLeases(sortLeases(start), { limit: 10 });
    const cursor = first.next!;
    expect(cursor).toBe(cursorOf(first.leases[9]!));
    // Meanwhile: two leases of the first page expire, a new one appears before the cursor
    // and one after it.
    const changed = sortLeases([
      ...start.filter((l) => l !== first.leases[0] && l !== first.leases[3]),
      lease(1, 4), // before the cursor: not shown again later
      lease(41, 4), // after it: shown
    ]);
    const rest = [];
    let after: string | null = cursor;
    for (let n = 0; after !== null; n++) {
      if (n > changed.length) throw new Error(`paging does not end at cursor ${after}`);
      const page = pageLeases(changed, { after, limit: 7 });
      rest.push(...page.leases);
      after = page.next;
    }
    const seen = [...first.leases, ...rest].map((l) => l.ip);
    expect(new Set(seen).size).toBe(seen.length);
    for (const l of start) expect(seen).toContain(l.ip);
    expect(rest.map((l) => l.ip)).toContain(lease(41, 4).ip);
    expect(rest.map((l) => l.ip)).not.toContain(lease(1, 4).ip);
    expect(rest.map((l) => l.ip)).toEqual(sortLeases(rest).map((l) => l.ip));
  });

  it('refuses a bad cursor or limit, naming it', () => {
    const sorted = sortLeases([lease(0, 4)]);
    for (const [limit, got] of [[0, '0'], [-1, '-1'], [1.5, '1.5'], [MAX_LEASES + 1, '65536'], ['5', '"5"'], [true, 'boolean'], [{ a: 1 }, 'object']])
      expect(() => pageLeases(sorted, { limit })).toThrow(new LeaseQueryError(`\`limit\` must be an integer from 1 to ${MAX_LEASES}, got ${got}`));
    for (const after of ['x', '10.0.0.1', '10.0.0.1/', '10.0.0.256/52:54:00:00:00:01', '10.0.0.1/zz', `10.0.0.1/${'aa:'.repeat(40)}aa`])
      expect(() => pageLeases(sorted, { after })).toThrow(/`after` = ".*" is not a cursor \("IP\/MAC", as `next` of a previous page\)/);
    expect(() => pageLeases(sorted, { after: 7 })).toThrow('`after` must be a cursor string from a previous page, got number');
    // the first page: absent, null or ""
    for (const after of [undefined, null, '']) expect(pageLeases(sorted, { after }).leases).toHaveLength(1);
  });

  it('measures a lease as JSON does, escapes included', () => {
    const l = { expires: 123, mac: '52:54:00:00:00:01', ip: '10.0.0.1', hostname: 'a"b\\c', clientId: '01:02' };
    expect(leaseJsonBytes(l)).toBe(Buffer.byteLength(JSON.stringify(l)));
    expect(leaseJsonBytes(lease(0))).toBe(JSON.stringify(lease(0)).length);
  });
});

describe('liveLeaseCount', () => {
  it('counts leases not yet expired (0 = never), right as time passes each expiry, forwards or back', () => {
    const l = (expires: number) => ({ expires, mac: '52:54:00:00:00:01', ip: '10.0.0.1', hostname: '', clientId: '' });
    const leases = [l(100), l(200), l(0), l(300), l(50)];
    expect(liveLeaseCount(leases, 10)).toBe(5);
    expect(liveLeaseCount(leases, 49)).toBe(5);
    expect(liveLeaseCount(leases, 50)).toBe(4);
    expect(liveLeaseCount(leases, 150)).toBe(3);
    expect(liveLeaseCount(leases, 199)).toBe(3);
    expect(liveLeaseCount(leases, 200)).toBe(2);
    expect(liveLeaseCount(leases, 1e9)).toBe(1);
    expect(liveLeaseCount(leases, 60)).toBe(4);
    expect(liveLeaseCount([...leases], 10)).toBe(5);
  });
});
