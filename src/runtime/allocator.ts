/**
 * Subnets vnet picks itself: address = "auto" now, user-created networks later. `allocate(key,
 * pool, prefixLength, used)` gives `key` the first subnet of `pool` with that prefix length that
 * overlaps nothing in `used` nor any other key's pick, and keeps the pick: the same key gets the
 * same subnet again for as long as it stays in the pool and free. Picks live in one small JSON
 * file ($VNET_STATE_DIR/allocations.json), written atomically, so they survive restarts and
 * reboots.
 */
import { readFileSync } from 'node:fs';
import { fromBigInt, overlaps, parseSubnet, toBigInt, cidrOf, type Subnet } from '../net/ip.js';
import { writeFileAtomic } from '../sys/atomic-file.js';
import { Mutex } from '../sys/mutex.js';

export class AllocationError extends Error {
  override name = 'AllocationError';
}

const bits = (s: Subnet) => (s.family === 4 ? 32 : 128);

/** The last address of a subnet, as a number. */
function lastOf(s: Subnet): bigint {
  return toBigInt(s.network) + (1n << BigInt(bits(s) - s.prefix)) - 1n;
}

/**
 * The first subnet of `prefixLength` inside `pool` that overlaps none of `used`; undefined when the
 * pool is full. Pure. Skips past each used range at once, so a large pool costs no more than the
 * number of used subnets in it.
 */
export function firstFree(pool: Subnet, prefixLength: number, used: readonly Subnet[]): Subnet | undefined {
  if (prefixLength < pool.prefix || prefixLength > bits(pool)) throw new RangeError(`a /${prefixLength} does not fit in ${cidrOf(pool)}`);
  const size = 1n << BigInt(bits(pool) - prefixLength);
  const end = lastOf(pool);
  // the used ranges inside the pool, as numbers
  const ranges = used.filter((u) => u.family === pool.family && overlaps(u, pool)).map((u) => [toBigInt(u.network), lastOf(u)] as const);
  let at = toBigInt(pool.network);
  while (at + size - 1n <= end) {
    const last = at + size - 1n;
    const hit = ranges.find(([first, lastUsed]) => first <= last && lastUsed >= at);
    if (!hit) return { family: pool.family, network: fromBigInt(at, pool.family), prefix: prefixLength };
    // the next aligned candidate after the end of what was hit
    at = ((hit[1] + 1n + size - 1n) / size) * size;
  }
  return undefined;
}

interface AllocationsFile {
  version: 1;
  /** key → "10.200.0.0/24" */
  subnets: Record<string, string>;
}

export class SubnetAllocator {
  private picks?: Map<string, Subnet>;
  private readonly writing = new Mutex();

  constructor(readonly file: string) {}

  /** key's pick as it stands (none yet: undefined). Reads the file once. */
  current(key: string): Subnet | undefined {
    return this.load().get(key);
  }

  /** Every key with a pick. */
  keys(): string[] {
    return [...this.load().keys()];
  }

  /** Every pick but `key`'s: each counts as used for everyone else. */
  others(key: string): Subnet[] {
    return [...this.load()].filter(([k]) => k !== key).map(([, s]) => s);
  }

  /**
   * The subnet for `key`: its pick while that is still inside `pool` and overlaps nothing in
   * `used` (nor another key's pick), else the first free one, saved before it is returned.
   * Throws AllocationError when the pool has no free subnet left.
   */
  async allocate(key: string, pool: Subnet, prefixLength: number, used: readonly Subnet[]): Promise<{ subnet: Subnet; previous?: Subnet }> {
    return this.writing.run(async () => {
      const picks = this.load();
      const taken = [...used, ...this.others(key)];
      const previous = picks.get(key);
      if (previous && previous.prefix === prefixLength && overlaps(previous, pool) && previous.prefix >= pool.prefix && !taken.some((u) => overlaps(u, previous)))
        return { subnet: previous };
      const subnet = firstFree(pool, prefixLength, taken);
      if (!subnet) throw new AllocationError(`no free /${prefixLength} left in ${cidrOf(pool)} (the pool of address = "auto"): every one overlaps a route, an address or another network`);
      const next = new Map(picks);
      next.set(key, subnet);
      await this.save(next);
      return { subnet, ...(previous ? { previous } : {}) };
    });
  }

  /**
   * Give `key` exactly `subnet` (a CIDR someone asked for), saved before it returns. Throws
   * AllocationError naming what it overlaps: one of `used`, or another key's pick.
   */
  async claim(key: string, subnet: Subnet, used: readonly Subnet[]): Promise<void> {
    await this.writing.run(async () => {
      const picks = this.load();
      const hit = used.find((u) => overlaps(u, subnet)) ?? this.others(key).find((u) => overlaps(u, subnet));
      if (hit) throw new AllocationError(`${cidrOf(subnet)} overlaps ${cidrOf(hit)}, which is in use`);
      const next = new Map(picks);
      next.set(key, subnet);
      await this.save(next);
    });
  }

  /** Forget `key`'s pick (its network is gone). */
  async release(key: string): Promise<void> {
    await this.writing.run(async () => {
      const picks = this.load();
      if (!picks.has(key)) return;
      const next = new Map(picks);
      next.delete(key);
      await this.save(next);
    });
  }

  private load(): Map<string, Subnet> {
    if (this.picks) return this.picks;
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new AllocationError(`cannot read ${this.file}: ${(err as Error).message}`, { cause: err });
      return (this.picks = new Map());
    }
    const picks = new Map<string, Subnet>();
    try {
      const v = JSON.parse(text) as AllocationsFile;
      if (v?.version !== 1 || typeof v.subnets !== 'object' || v.subnets === null) throw new Error('unexpected shape');
      for (const [key, cidr] of Object.entries(v.subnets)) {
        const s = typeof cidr === 'string' ? parseSubnet(cidr) : undefined;
        if (!s) throw new Error(`${JSON.stringify(key)} has no subnet`);
        picks.set(key, s);
      }
    } catch (err) {
      throw new AllocationError(`${this.file} is corrupt (${(err as Error).message}); move it aside and vnet picks the subnets afresh`, { cause: err });
    }
    return (this.picks = picks);
  }

  private async save(picks: Map<string, Subnet>): Promise<void> {
    const file: AllocationsFile = { version: 1, subnets: Object.fromEntries([...picks].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, s]) => [k, cidrOf(s)])) };
    await writeFileAtomic(this.file, `${JSON.stringify(file, null, 1)}\n`, { mode: 0o644 });
    this.picks = picks;
  }
}
