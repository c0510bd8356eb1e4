/**
 * The subnet allocator (address = "auto" now, user networks later): the first free subnet of a
 * pool, picks kept per key in a file across restarts, a pick the host took meanwhile picked
 * again, a full pool a clear error.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cidrOf, parseSubnet, type Subnet } from '../../src/net/ip.js';
import { AllocationError, firstFree, SubnetAllocator } from '../../src/runtime/allocator.js';

const S = (cidr: string): Subnet => parseSubnet(cidr)!;
const pool = S('10.200.0.0/16');
const dir = mkdtempSync(path.join(os.tmpdir(), 'vnet-alloc-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = () => path.join(dir, `allocations-${++n}.json`);

describe('firstFree', () => {
  it('is the start of the pool when nothing is used', () => {
    expect(cidrOf(firstFree(pool, 24, [])!)).toBe('10.200.0.0/24');
  });

  it('skips what overlaps: equal, wider, narrower; and ignores what is outside the pool', () => {
    const used = [S('10.200.0.0/24'), S('10.200.1.128/25'), S('10.200.2.7/32'), S('192.168.0.0/16'), S('10.201.0.0/24')];
    expect(cidrOf(firstFree(pool, 24, used)!)).toBe('10.200.3.0/24');
    expect(cidrOf(firstFree(pool, 24, [S('10.200.0.0/22')])!)).toBe('10.200.4.0/24');
    expect(cidrOf(firstFree(pool, 24, [S('10.0.0.0/8')]) ?? { family: 4, network: 'none', prefix: 0 })).toBe('none/0');
  });

  it('finds the last one and then none; works for any prefix and IPv6', () => {
    const small = S('10.200.0.0/23');
    expect(cidrOf(firstFree(small, 24, [S('10.200.0.0/24')])!)).toBe('10.200.1.0/24');
    expect(firstFree(small, 24, [S('10.200.0.0/24'), S('10.200.1.0/24')])).toBeUndefined();
    expect(cidrOf(firstFree(S('fd00:5::/48'), 64, [S('fd00:5::/63')])!)).toBe('fd00:5:0:2::/64');
    expect(() => firstFree(small, 22, [])).toThrow(/does not fit/);
  });

  it('a pool of 65,536 /24s with all but its last /16 used', () => {
    const used = Array.from({ length: 255 }, (_, i) => S(`10.${i}.0.0/16`));
    expect(cidrOf(firstFree(S('10.0.0.0/8'), 24, used)!)).toBe('10.255.0.0/24');
  });
});

describe('SubnetAllocator', () => {
  it('keeps each key\'s pick in the file, and a new allocator (a restart) gives the same ones', async () => {
    const file = fresh();
    const a = new SubnetAllocator(file);
    expect(cidrOf((await a.allocate('admin:one', pool, 24, [S('10.200.0.0/24')])).subnet)).toBe('10.200.1.0/24');
    expect(cidrOf((await a.allocate('admin:two', pool, 24, [S('10.200.0.0/24')])).subnet)).toBe('10.200.2.0/24');
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ version: 1, subnets: { 'admin:one': '10.200.1.0/24', 'admin:two': '10.200.2.0/24' } });
    const b = new SubnetAllocator(file);
    expect(cidrOf(b.current('admin:two')!)).toBe('10.200.2.0/24');
    // the host no longer uses 10.200.0.0/24: still the same pick, not the first free
    expect(await b.allocate('admin:one', pool, 24, [])).toEqual({ subnet: S('10.200.1.0/24') });
  });

  it('picks again when the pick became used, or left the pool, and says what it was', async () => {
    const a = new SubnetAllocator(fresh());
    await a.allocate('admin:one', pool, 24, []);
    expect(await a.allocate('admin:one', pool, 24, [S('10.200.0.0/20')])).toEqual({ subnet: S('10.200.16.0/24'), previous: S('10.200.0.0/24') });
    expect(await a.allocate('admin:one', S('10.201.0.0/16'), 24, [])).toEqual({ subnet: S('10.201.0.0/24'), previous: S('10.200.16.0/24') });
  });

  it('a full pool is an error naming it; release frees a pick for others', async () => {
    const a = new SubnetAllocator(fresh());
    const tiny = S('10.200.0.0/23');
    await a.allocate('k1', tiny, 24, []);
    await a.allocate('k2', tiny, 24, []);
    await expect(a.allocate('k3', tiny, 24, [])).rejects.toThrow(new AllocationError('no free /24 left in 10.200.0.0/23 (the pool of address = "auto"): every one overlaps a route, an address or another network'));
    await a.release('k1');
    expect(cidrOf((await a.allocate('k3', tiny, 24, [])).subnet)).toBe('10.200.0.0/24');
    expect(a.keys().sort()).toEqual(['k2', 'k3']);
  });

  it('a corrupt file is an error naming it, and is left as it is', async () => {
    const file = fresh();
    writeFileSync(file, '{"version":1,"subnets":{"admin:x":"10.200.0.1/24"}}');
    const a = new SubnetAllocator(file);
    expect(() => a.current('admin:x')).toThrow(`${file} is corrupt ("admin:x" has no subnet); move it aside`);
    await expect(a.allocate('admin:y', pool, 24, [])).rejects.toThrow(/is corrupt/);
    expect(readFileSync(file, 'utf8')).toContain('10.200.0.1/24');
  });
});
