/**
 * Refusals (permission denied, quota, bad request, unknown method, protocol error) and
 * clients dropped for misbehaving are worth a log line, but a caller can cause them at will:
 * each uid gets one line per REFUSAL_WINDOW_MS at most, shared by every front of vnetd
 * (socket and D-Bus), with its fields cut and a count of the refusals held back since.
 */
import type { Logger } from 'pino';
import { cut } from './cut.js';
import { RateLimiter } from './rate-limit.js';

export const REFUSAL_WINDOW_MS = 10_000;

/** One limiter for every front of vnetd (socket, D-Bus), made by main(): a uid's refusals count together. */
export function refusalLimiter(): RateLimiter<number> {
  return new RateLimiter<number>({ windowMs: REFUSAL_WINDOW_MS });
}

export type RefusalFields = Record<string, string | number | boolean | undefined>;

/**
 * One warn line `msg` about `uid`, unless that uid already had one within the window: string
 * fields are cut, and `suppressed` says how many were held back since the uid's last line.
 */
export function logRefusal(log: Logger, limiter: RateLimiter<number>, uid: number, fields: RefusalFields, msg: string): void {
  limiter.write(uid, (suppressed) => {
    const line: Record<string, string | number | boolean> = { uid };
    for (const [k, v] of Object.entries(fields)) if (v !== undefined) line[k] = typeof v === 'string' ? cut(v) : v;
    if (suppressed > 0) line.suppressed = suppressed;
    log.warn(line, msg);
  });
}
