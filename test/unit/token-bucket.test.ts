import { describe, expect, it } from 'vitest';
import { TokenBucket } from '../../src/log/token-bucket.js';

describe('TokenBucket (a fake clock)', () => {
  const make = (burst: number, refillMs: number) => {
    let t = 0;
    const lim = new TokenBucket({ burst, refillMs, now: () => t });
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
    expect(() => new TokenBucket({ burst: 0, refillMs: 1000 })).toThrow(RangeError);
    expect(() => new TokenBucket({ burst: 5, refillMs: 0 })).toThrow(RangeError);
  });
});
