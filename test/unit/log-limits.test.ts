/**
 * src/log: log fields that carry outside input are cut (cut, errField), and refusals are
 * logged at most once per key per window, with a count of what was held back (RateLimiter,
 * logRefusal), on a fake clock.
 */
import fc from 'fast-check';
import pino from 'pino';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { cut, errField, MAX_FIELD_BYTES } from '../../src/log/cut.js';
import { RateLimiter } from '../../src/log/rate-limit.js';
import { isRefusal } from '../../src/api/errors.js';
import { logRefusal, REFUSAL_WINDOW_MS } from '../../src/log/refusals.js';

const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

describe('cut', () => {
  it('leaves a text of at most 256 bytes alone', () => {
    expect(cut('')).toBe('');
    expect(cut('default')).toBe('default');
    expect(cut('x'.repeat(256))).toBe('x'.repeat(256));
    expect(cut('é'.repeat(128))).toBe('é'.repeat(128)); // 256 bytes in 128 characters
  });

  it('cuts a longer one to 256 bytes, saying how long it was', () => {
    const out = cut('x'.repeat(257));
    expect(bytes(out)).toBeLessThanOrEqual(MAX_FIELD_BYTES);
    expect(out).toMatch(/^x+… \(257 characters\)$/);
    expect(cut('é'.repeat(129))).toMatch(/^é+… \(129 characters\)$/); // 258 bytes in 129 characters
    const ten = cut('"'.repeat(10 * 1024 * 1024));
    expect(bytes(ten)).toBeLessThanOrEqual(MAX_FIELD_BYTES);
    expect(ten.endsWith('… (10485760 characters)')).toBe(true);
  });

  it('never cuts inside a character, never exceeds the limit, and keeps a prefix (any text, any limit)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 600 }), fc.integer({ min: 24, max: 300 }), (text, max) => {
        const out = cut(text, max);
        if (bytes(text) <= max) {
          expect(out).toBe(text);
          return;
        }
        expect(bytes(out)).toBeLessThanOrEqual(max);
        const head = out.slice(0, out.lastIndexOf('… ('));
        expect(text.startsWith(head)).toBe(true);
        // not between the two halves of a surrogate pair
        const last = head.charCodeAt(head.length - 1);
        const next = text.charCodeAt(head.length);
        expect(last >= 0xd800 && last <= 0xdbff && next >= 0xdc00 && next <= 0xdfff).toBe(false);
      }),
    );
  });

  it('handles 4-byte characters at the boundary', () => {
    const out = cut('😀'.repeat(100), 40);
    expect(bytes(out)).toBeLessThanOrEqual(40);
    expect(out).toMatch(/^(😀)+… \(200 characters\)$/u);
  });
});

describe('errField', () => {
  it('cuts the message (with its causes) and keeps the stack frames under the cut first line', () => {
    const cause = new Error(`bad name ${'n'.repeat(5000)}`);
    const err = new TypeError(`could not do it for ${'q'.repeat(5000)}`, { cause });
    const f = errField(err);
    expect(f.type).toBe('TypeError');
    expect(bytes(f.message)).toBeLessThanOrEqual(MAX_FIELD_BYTES);
    expect(f.message).toMatch(/^could not do it for q+… \(10031 characters\)$/);
    expect(f.stack!.split('\n')[0]).toBe(`TypeError: ${f.message}`);
    expect(f.stack).toMatch(/\n {4}at /);
    expect(f.stack!.length).toBeLessThan(2048 + 300);
  });

  it('logs through pino as an error with its type, and nothing of the long input', () => {
    const lines: string[] = [];
    const log = pino({ base: null }, new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }));
    const err = Object.assign(new RangeError(`x${'y'.repeat(100_000)}`), { code: 'EFOO' });
    log.error({ err: errField(err) }, 'failed');
    const line = JSON.parse(lines[0]!) as { err: { type: string; message: string; code: string } };
    expect(lines[0]!.length).toBeLessThan(4096);
    expect(line.err).toMatchObject({ type: 'RangeError', code: 'EFOO' });
    expect(line.err.message).toMatch(/… \(100001 characters\)$/);
  });

  it('takes anything thrown', () => {
    expect(errField('z'.repeat(1000))).toMatchObject({ type: 'string', message: expect.stringMatching(/… \(1000 characters\)$/) });
  });
});

/** What RateLimiter.write handed its writer (the count held back), or undefined when it held this one back. */
function admit<K>(rl: RateLimiter<K>, key: K): { suppressed: number } | undefined {
  let got: { suppressed: number } | undefined;
  rl.write(key, (suppressed) => (got = { suppressed }));
  return got;
}

describe('RateLimiter', () => {
  it('admits one line per key per window and counts the rest into the next line', () => {
    let now = 1_000_000;
    const rl = new RateLimiter<number>({ windowMs: 10_000, now: () => now });
    expect(admit(rl, 65534)).toEqual({ suppressed: 0 });
    for (let i = 0; i < 5; i++) {
      now += 1000;
      expect(admit(rl, 65534)).toBeUndefined();
    }
    now += 4999; // 9 999 ms after the first line
    expect(admit(rl, 65534)).toBeUndefined();
    now += 1; // exactly one window after it
    expect(admit(rl, 65534)).toEqual({ suppressed: 6 });
    expect(admit(rl, 65534)).toBeUndefined();
    now += 10_000;
    expect(admit(rl, 65534)).toEqual({ suppressed: 1 });
    now += 60_000;
    expect(admit(rl, 65534)).toEqual({ suppressed: 0 });
  });

  it('starts the window when the line is written, not when it was asked for', () => {
    let now = 0;
    const rl = new RateLimiter<string>({ windowMs: 10_000, now: () => now });
    const written: number[] = [];
    rl.write('k', () => ((now += 50), written.push(now))); // a slow writer: its line is stamped 50 ms late
    now = 10_010;
    expect(rl.write('k', () => written.push(now))).toBe(false); // 10 010 ms after the ask, 9 960 after the line
    now = 10_050;
    expect(rl.write('k', () => written.push(now))).toBe(true);
    expect(written).toEqual([50, 10_050]);
  });

  it('keeps keys apart', () => {
    let now = 0;
    const rl = new RateLimiter<number>({ windowMs: 10_000, now: () => now });
    expect(admit(rl, 1)).toEqual({ suppressed: 0 });
    expect(admit(rl, 2)).toEqual({ suppressed: 0 });
    expect(admit(rl, 1)).toBeUndefined();
    now = 10_000;
    expect(admit(rl, 2)).toEqual({ suppressed: 0 });
    expect(admit(rl, 1)).toEqual({ suppressed: 1 });
  });

  it('remembers a bounded number of keys, forgetting first those that owe nothing', () => {
    let now = 0;
    const rl = new RateLimiter<number>({ windowMs: 10, now: () => now, maxKeys: 100 });
    admit(rl, -1);
    admit(rl, -1); // owes a count
    now = 1000;
    for (let k = 0; k < 10_000; k++) admit(rl, k);
    expect(rl.size).toBeLessThanOrEqual(101);
    // the key owing a count was the oldest, and is forgotten only when every key is recent
    now = 5000;
    expect(admit(rl, -1)).toEqual({ suppressed: 0 });
  });
});

describe('logRefusal', () => {
  function capture() {
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ base: null, level: 'info' }, new Writable({ write: (c, _e, cb) => (lines.push(JSON.parse(String(c))), cb()) }));
    return { log, lines };
  }

  it('writes one warn line per uid per window, fields cut, with the count held back', () => {
    const { log, lines } = capture();
    let now = 0;
    const rl = new RateLimiter<number>({ windowMs: REFUSAL_WINDOW_MS, now: () => now });
    const huge = 'N'.repeat(10 * 1024 * 1024);
    for (let i = 0; i < 3; i++) logRefusal(log, rl, 65534, { method: 'up', code: 'EPERM', reason: `uid 65534 may not bring up network "${huge}"` }, 'request refused');
    logRefusal(log, rl, 1000, { code: 'EDQUOT', reason: 'quota' }, 'request refused');
    now += REFUSAL_WINDOW_MS;
    logRefusal(log, rl, 65534, { code: 'ENOSYS', reason: huge, pid: 7 }, 'request refused');
    expect(lines.map((l) => [l.uid, l.code, l.suppressed])).toEqual([
      [65534, 'EPERM', undefined],
      [1000, 'EDQUOT', undefined],
      [65534, 'ENOSYS', 2],
    ]);
    expect(lines.every((l) => l.level === 40 && l.msg === 'request refused')).toBe(true);
    expect(lines[2]!.pid).toBe(7);
    expect(JSON.stringify(lines).length).toBeLessThan(2048);
  });

  it('knows which codes are refusals', () => {
    for (const c of ['EPERM', 'EACCES', 'EDQUOT', 'EUSERS', 'EINVAL', 'ENOSYS', 'EPROTO']) expect(isRefusal(c)).toBe(true);
    for (const c of ['ENOENT', 'EBUSY', 'EIO', 'ENETDOWN', 'constructor']) expect(isRefusal(c)).toBe(false);
  });
});
