/**
 * At most one log line per key (a uid, a child process...) per window. What is held back is
 * counted, and the count goes out with the next line that is written for that key, so a log
 * reader still learns how much happened. The clock is a parameter, for tests.
 */

export interface RateLimitOptions {
  /** one line per key per this many ms */
  windowMs: number;
  /** the clock, in ms (default Date.now) */
  now?: () => number;
  /** keys remembered at most; beyond, the oldest are forgotten (default 4096) */
  maxKeys?: number;
}

interface Entry {
  /** when the last line for this key was written */
  at: number;
  /** lines held back since */
  suppressed: number;
}

export class RateLimiter<K> {
  private readonly entries = new Map<K, Entry>();
  private readonly windowMs: number;
  private readonly now: () => number;
  private readonly maxKeys: number;

  constructor(opts: RateLimitOptions) {
    this.windowMs = opts.windowMs;
    this.now = opts.now ?? Date.now;
    this.maxKeys = opts.maxKeys ?? 4096;
  }

  /**
   * Write a line about `key`, unless one was written within the window (then it is counted):
   * `write` gets how many lines about `key` were held back since the last one. The window
   * starts when `write` returns, so the lines' own timestamps are a window apart at least.
   * Returns whether it wrote.
   */
  write(key: K, write: (suppressed: number) => void): boolean {
    const e = this.entries.get(key);
    if (e && this.now() - e.at < this.windowMs) {
      e.suppressed++;
      return false;
    }
    write(e?.suppressed ?? 0);
    const now = this.now();
    // re-inserted: the map stays in order of the last line written, oldest first
    this.entries.delete(key);
    this.entries.set(key, { at: now, suppressed: 0 });
    if (this.entries.size > this.maxKeys) this.forget(now);
    return true;
  }

  /** keys remembered now */
  get size(): number {
    return this.entries.size;
  }

  /** Drop keys whose window is over and who owe no count; then, if still too many, the oldest. */
  private forget(now: number): void {
    for (const [key, e] of this.entries) if (now - e.at >= this.windowMs && e.suppressed === 0) this.entries.delete(key);
    for (const key of this.entries.keys()) {
      if (this.entries.size <= this.maxKeys) break;
      this.entries.delete(key);
    }
  }
}
