/**
 * The one backoff: delays that double from `initialMs` to `maxMs`, reset by a success (or by a
 * run that lasted at least `stableMs`), and an optional limit on failures in a row.
 */
export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  /** quick failures in a row before giving up (Infinity: never) */
  maxFailures?: number;
  /** a run at least this long is not a quick failure (resets the count) */
  stableMs?: number;
}

export class Backoff {
  private failures = 0;

  constructor(readonly opts: BackoffOptions) {}

  /** failures in a row so far */
  get count(): number {
    return this.failures;
  }

  /** Record a failure after a run of `ranMs`; returns the delay before the next try, or undefined to give up. */
  fail(ranMs = 0): number | undefined {
    this.failures = this.opts.stableMs !== undefined && ranMs >= this.opts.stableMs ? 1 : this.failures + 1;
    if (this.failures >= (this.opts.maxFailures ?? Infinity)) return undefined;
    return Math.min(this.opts.maxMs, this.opts.initialMs * 2 ** (this.failures - 1));
  }

  reset(): void {
    this.failures = 0;
  }
}
