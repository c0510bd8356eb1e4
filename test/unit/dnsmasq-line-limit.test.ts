import { describe, expect, it } from 'vitest';
import { cutLine, LineLimiter, MAX_LINE_BYTES } from '../../src/dhcp/line-limit.js';

describe('cutLine', () => {
  it('keeps a line of at most 256 bytes as it is', () => {
    const line = 'x'.repeat(MAX_LINE_BYTES);
    expect(cutLine(line)).toBe(line);
    expect(cutLine('dnsmasq-dhcp[42]: DHCPDISCOVER(virbr0) 52:54:00:12:34:56 no address available')).toBe(
      'dnsmasq-dhcp[42]: DHCPDISCOVER(virbr0) 52:54:00:12:34:56 no address available',
    );
  });

  it('cuts a longer line to 256 bytes, ending in "…"', () => {
    const out = cutLine('y'.repeat(5000));
    expect(Buffer.byteLength(out)).toBe(MAX_LINE_BYTES);
    expect(out.endsWith('…')).toBe(true);
    expect(out.startsWith('yyy')).toBe(true);
  });

  it('never splits a multi-byte character', () => {
    for (let pad = 0; pad < 4; pad += 1) {
      const out = cutLine('a'.repeat(pad) + '€😀'.repeat(200));
      expect(Buffer.byteLength(out)).toBeLessThanOrEqual(MAX_LINE_BYTES);
      expect(out).not.toContain('\ufffd');
      expect(Buffer.from(out, 'utf8').toString('utf8')).toBe(out);
    }
  });
});

describe('LineLimiter (a fake clock)', () => {
  const make = (burst: number, refillMs: number) => {
    let t = 0;
    const lim = new LineLimiter({ burst, refillMs, now: () => t });
    return { lim, advance: (ms: number) => (t += ms) };
  };

  it('lets a burst through, then holds lines back and counts them', () => {
    const { lim } = make(20, 1000);
    const verdicts = Array.from({ length: 10_000 }, () => lim.take());
    expect(verdicts.filter((v) => v.pass)).toHaveLength(20);
    expect(verdicts.slice(0, 20).every((v) => v.pass && v.suppressed === 0)).toBe(true);
    expect(lim.drain()).toBe(9980);
    expect(lim.drain()).toBe(0);
  });

  it('then one line a second, which carries the count of the lines held back before it', () => {
    const { lim, advance } = make(5, 1000);
    for (let i = 0; i < 5; i += 1) expect(lim.take().pass).toBe(true);
    let passed = 0;
    const reported: number[] = [];
    // a flood of 100 lines a second for 10 seconds
    for (let i = 0; i < 1000; i += 1) {
      advance(10);
      const v = lim.take();
      if (v.pass) passed += 1;
      if (v.suppressed) reported.push(v.suppressed);
    }
    expect(passed).toBe(10);
    expect(reported).toHaveLength(10);
    expect(reported.reduce((a, b) => a + b, 0) + lim.drain()).toBe(1000 - 10);
  });

  it('refills to the burst after a quiet spell, and no further', () => {
    const { lim, advance } = make(3, 1000);
    for (let i = 0; i < 10; i += 1) lim.take();
    lim.drain();
    advance(3_600_000);
    expect(Array.from({ length: 10 }, () => lim.take().pass).filter(Boolean)).toHaveLength(3);
  });

  it('refuses a nonsensical configuration', () => {
    expect(() => new LineLimiter({ burst: 0, refillMs: 1000 })).toThrow(RangeError);
    expect(() => new LineLimiter({ burst: 5, refillMs: 0 })).toThrow(RangeError);
  });
});
