/** The one backoff (dnsmasq restarts, the nft monitor's restarts). */
import { describe, expect, it } from 'vitest';
import { Backoff } from '../../src/sys/backoff.js';

describe('Backoff', () => {
  it('doubles from the first delay to the longest, and gives up after the most quick failures in a row', () => {
    const b = new Backoff({ initialMs: 200, maxMs: 1000, maxFailures: 5, stableMs: 5000 });
    expect([b.fail(), b.fail(), b.fail(), b.fail()]).toEqual([200, 400, 800, 1000]);
    expect(b.fail()).toBeUndefined();
    expect(b.count).toBe(5);
  });

  it('a run that lasted stableMs starts the count again; reset() too', () => {
    const b = new Backoff({ initialMs: 100, maxMs: 10_000, maxFailures: 3, stableMs: 1000 });
    expect([b.fail(), b.fail()]).toEqual([100, 200]);
    expect(b.fail(1000)).toBe(100);
    expect(b.fail()).toBe(200);
    b.reset();
    expect(b.fail()).toBe(100);
  });

  it('without a limit never gives up', () => {
    const b = new Backoff({ initialMs: 1000, maxMs: 60_000 });
    for (let i = 0; i < 100; i++) expect(b.fail()).toBeLessThanOrEqual(60_000);
  });
});
