/**
 * Bounds what one network's dnsmasq can put in vnetd's log: each line cut to a byte
 * limit, and a token bucket per network (a burst of lines, then one a second) with a
 * count of the lines it held back. A guest can make dnsmasq log at packet rate (every
 * DHCP request it cannot serve is an error line even with quiet-dhcp); the log must grow
 * at the bucket's rate, not the guest's.
 */

/** longest dnsmasq line copied into the log, in UTF-8 bytes */
export const MAX_LINE_BYTES = 256;
const ELLIPSIS = '…';

/** `line` cut to at most `max` UTF-8 bytes (ending in "…" when cut), never splitting a character. */
export function cutLine(line: string, max = MAX_LINE_BYTES): string {
  const buf = Buffer.from(line, 'utf8');
  if (buf.length <= max) return line;
  let end = Math.max(0, max - Buffer.byteLength(ELLIPSIS));
  // back up to the first byte of a character (continuation bytes are 10xxxxxx)
  while (end > 0 && (buf[end]! & 0xc0) === 0x80) end -= 1;
  return buf.subarray(0, end).toString('utf8') + ELLIPSIS;
}

export interface LineLimiterOptions {
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

export class LineLimiter {
  private readonly burst: number;
  private readonly refillMs: number;
  private readonly now: () => number;
  private tokens: number;
  private last: number;
  private held = 0;

  constructor(opts: LineLimiterOptions) {
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
