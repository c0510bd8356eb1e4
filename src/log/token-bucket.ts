/**
 * A token bucket for log lines: a burst of lines, then one per refill period, with a count of
 * the lines it held back. It bounds what one source (a network's dnsmasq, driven by a guest)
 * can put in vnetd's log: the log grows at the bucket's rate, not the source's.
 */

export interface TokenBucketOptions {
  /** lines let through at once after a quiet spell */
  burst: number;
  /** one more line is allowed every this many ms */
  refillMs: number;
  /** the clock, in ms (tests pass their own) */
  now?: () => number;
}

export interface Verdict {
  /** log this line */
  pass: boolean;
  /** lines held back since the last one that passed: log their count first (0 when none) */
  suppressed: number;
}

export class TokenBucket {
  private readonly burst: number;
  private readonly refillMs: number;
  private readonly now: () => number;
  private tokens: number;
  private last: number;
  private held = 0;

  constructor(opts: TokenBucketOptions) {
    if (!(opts.burst >= 1) || !(opts.refillMs > 0)) throw new RangeError('LineLimiter: burst >= 1 and refillMs > 0');
    this.burst = opts.burst;
    this.refillMs = opts.refillMs;
    this.now = opts.now ?? (() => performance.now());
    this.tokens = opts.burst;
    this.last = this.now();
  }

  /** One line arrived: may it be logged? */
  take(): Verdict {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + (t - this.last) / this.refillMs);
    this.last = t;
    if (this.tokens < 1) {
      this.held += 1;
      return { pass: false, suppressed: 0 };
    }
    this.tokens -= 1;
    return { pass: true, suppressed: this.drain() };
  }

  /** The count of lines held back since the last report, reset to 0 (for a report at exit or stop). */
  drain(): number {
    const n = this.held;
    this.held = 0;
    return n;
  }
}
