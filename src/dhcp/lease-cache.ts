/**
 * The leases of each lease file, parsed once per version of the file. A version is the file's
 * identity (device, inode, size, mtime, ctime); an unchanged file is answered from memory, a
 * changed one is parsed again (in slices, never blocking the event loop: leases.ts). A file
 * that cannot be read gives a snapshot with a `problem` instead of an error, so one bad file
 * spoils only its own network's answer.
 *
 * Concurrent get()s of one file share one parse, and a file is never parsed twice at once:
 * a caller that arrives during a parse waits for it, and takes its result if it began after
 * the caller asked (else it looks again, and may start the next parse).
 *
 * A guest can make dnsmasq rewrite a large lease file many times a second (every renewal is a
 * change). So a file is parsed again no sooner than GAP_FACTOR times its last parse took, after
 * that parse: until then its last snapshot is served. A small file (a parse of a millisecond)
 * is always current; the largest valid file (about a second to parse) is at most a few seconds
 * behind, and parsing it takes at most a fifth of one core however fast it changes. A pager
 * following cursors page after page is not held up by a parse per page either.
 */
import { lstatSync } from 'node:fs';
import type { Lease } from '../model.js';
import { LeaseFileError, readLeaseFile, type FileIdentity, type ParsedLeases } from './leases.js';
import { sortLeases } from './lease-page.js';

export interface LeaseSnapshot {
  /** sorted by address, then MAC (lease-page.ts); empty when there is a problem */
  leases: readonly Lease[];
  /** lines that were not leases */
  malformed: number;
  /** why the file could not be read ("lease file PATH: is not a regular file", ...) */
  problem?: string;
}

export interface LeaseCacheOptions {
  /** reads and parses one file (default readLeaseFile); its identity is what it read */
  read?: (file: string) => Promise<ParsedLeases & { identity?: FileIdentity }>;
  /** a changed file waits this many times its last parse time before the next (default GAP_FACTOR) */
  gapFactor?: number;
  /** a monotonic clock in ms (default performance.now) */
  now?: () => number;
}

const GAP_FACTOR = 4;

/**
 * A file modified this shortly before its read began may be written again within the same
 * timestamp tick (file times come from a coarse clock, ticks of at most 10 ms), same size,
 * leaving its identity unchanged: such a version is read again on the next get (as git treats
 * a "racily clean" index entry). A write sets the mtime, so the mtime is what is compared.
 */
const RACY_NS = 50_000_000n;

interface Entry {
  key: string;
  snapshot: LeaseSnapshot;
  racy: boolean;
  /** when the parse that made it ended, and how long it took (ms, monotonic) */
  endedMs: number;
  costMs: number;
}

const NONE: LeaseSnapshot = Object.freeze({ leases: Object.freeze([]) as readonly Lease[], malformed: 0 });

function keyOf(id: { dev: bigint; ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }): string {
  return `${id.dev}:${id.ino}:${id.size}:${id.mtimeNs}:${id.ctimeNs}`;
}

export class LeaseCache {
  private readonly entries = new Map<string, Entry>();
  private readonly running = new Map<string, { seq: number; done: Promise<LeaseSnapshot> }>();
  private readonly read: NonNullable<LeaseCacheOptions['read']>;
  private readonly gapFactor: number;
  private readonly now: () => number;
  /** orders requests and parses: a parse with a higher number began after a request */
  private clock = 0;

  constructor(opts: LeaseCacheOptions = {}) {
    this.read = opts.read ?? ((file) => readLeaseFile(file));
    this.gapFactor = opts.gapFactor ?? GAP_FACTOR;
    this.now = opts.now ?? (() => performance.now());
  }

  /** The leases of `file` (a missing file has none). Never throws. */
  async get(file: string): Promise<LeaseSnapshot> {
    const asked = ++this.clock;
    for (;;) {
      const run = this.running.get(file);
      if (run) {
        const snapshot = await run.done;
        if (run.seq > asked) return snapshot;
        continue;
      }
      let st;
      try {
        // one local syscall, no thread-pool hop: a pager asks once per page
        st = lstatSync(file, { bigint: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          this.entries.delete(file);
          return NONE;
        }
        return { leases: [], malformed: 0, problem: `lease file ${file}: cannot read: ${(err as Error).message}` };
      }
      const entry = this.entries.get(file);
      if (entry && !entry.racy && entry.key === keyOf(st)) return entry.snapshot;
      if (entry && this.now() < entry.endedMs + this.gapFactor * entry.costMs) return entry.snapshot;
      return this.parse(file, keyOf(st), st.mtimeNs);
    }
  }

  /** Drop what is kept for `file` (its network is gone). */
  forget(file: string): void {
    this.entries.delete(file);
  }

  private parse(file: string, statKey: string, statMtimeNs: bigint): Promise<LeaseSnapshot> {
    const seq = ++this.clock;
    const startedMs = this.now();
    const startedNs = BigInt(Date.now()) * 1_000_000n;
    const keep = (key: string, snapshot: LeaseSnapshot, mtimeNs: bigint) => {
      const endedMs = this.now();
      this.entries.set(file, { key, snapshot, racy: mtimeNs + RACY_NS >= startedNs, endedMs, costMs: endedMs - startedMs });
    };
    const work = async (): Promise<LeaseSnapshot> => {
      try {
        const r = await this.read(file);
        const snapshot: LeaseSnapshot = { leases: sortLeases(r.leases), malformed: r.malformed };
        if (r.identity) keep(keyOf(r.identity), snapshot, r.identity.mtimeNs);
        else this.entries.delete(file);
        return snapshot;
      } catch (err) {
        const message = err instanceof LeaseFileError ? err.message : `lease file ${file}: ${err instanceof Error ? err.message : String(err)}`;
        const snapshot: LeaseSnapshot = { leases: [], malformed: 0, problem: message };
        // keyed by what lstat saw: the same bad file is not tried again until it changes
        keep(statKey, snapshot, statMtimeNs);
        return snapshot;
      } finally {
        if (this.running.get(file) === run) this.running.delete(file);
      }
    };
    const run: { seq: number; done: Promise<LeaseSnapshot> } = { seq, done: Promise.resolve(NONE) };
    this.running.set(file, run);
    run.done = work();
    return run.done;
  }
}
