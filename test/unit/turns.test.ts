/**
 * Turns (src/daemon/turns.ts): one uid's requests are served a few at a time across all its
 * connections, in arrival order, and never hold up another uid's.
 */
import { describe, expect, it } from 'vitest';
import { Turns } from '../../src/daemon/turns.js';

/** A job that runs until released, recording when it starts. */
function gate(log: string[], name: string) {
  let open!: () => void;
  const released = new Promise<void>((r) => (open = r));
  return { fn: async () => (log.push(name), await released, name), open };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('Turns', () => {
  it('serves at most perKey jobs of one key at once, the rest in arrival order', async () => {
    const turns = new Turns(2);
    const started: string[] = [];
    const jobs = ['a', 'b', 'c', 'd', 'e'].map((n) => gate(started, n));
    const done = jobs.map((j) => turns.run(7, j.fn));
    await tick();
    expect(started).toEqual(['a', 'b']);
    expect(turns.active(7)).toBe(2);
    jobs[1]!.open();
    await tick();
    expect(started).toEqual(['a', 'b', 'c']);
    jobs[0]!.open();
    jobs[2]!.open();
    await tick();
    expect(started).toEqual(['a', 'b', 'c', 'd', 'e']);
    jobs[3]!.open();
    jobs[4]!.open();
    expect(await Promise.all(done)).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(turns.active(7)).toBe(0);
  });

  it('one key with every turn taken does not hold up another key', async () => {
    const turns = new Turns(1);
    const started: string[] = [];
    const hog = [gate(started, 'hog1'), gate(started, 'hog2')];
    const hogDone = hog.map((j) => turns.run(65534, j.fn));
    const other = turns.run(1000, async () => (started.push('other'), 'other'));
    expect(await other).toBe('other');
    expect(started).toEqual(['hog1', 'other']);
    hog[0]!.open();
    hog[1]!.open();
    await Promise.all(hogDone);
  });

  it('a job that throws gives its turn back', async () => {
    const turns = new Turns(1);
    await expect(turns.run(1, async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(turns.active(1)).toBe(0);
    expect(await turns.run(1, async () => 'next')).toBe('next');
  });
});
