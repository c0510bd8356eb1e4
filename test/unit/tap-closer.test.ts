/**
 * TapCloser (src/daemon/tap-closer.ts): vnetd's tap fds are closed off the main thread, a
 * few at a time, and a uid's next tap can wait until that uid's earlier closes are done.
 */
import { describe, expect, it } from 'vitest';
import { TapCloser } from '../../src/daemon/tap-closer.js';

/** A fake close(2) whose calls finish when the test says. */
function fakeClose() {
  const calls: Array<{ fd: number; finish: () => void }> = [];
  return { calls, fn: (fd: number, done: () => void) => void calls.push({ fd, finish: done }) };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('TapCloser', () => {
  it('runs at most two closes at once, in order', () => {
    const f = fakeClose();
    const c = new TapCloser(f.fn);
    for (const fd of [10, 11, 12, 13]) c.close(fd, 65534);
    expect(f.calls.map((x) => x.fd)).toEqual([10, 11]);
    expect(c.size).toBe(4);
    f.calls[1]!.finish();
    expect(f.calls.map((x) => x.fd)).toEqual([10, 11, 12]);
    f.calls[0]!.finish();
    f.calls[2]!.finish();
    f.calls[3]!.finish();
    expect(c.size).toBe(0);
  });

  it('settled(uid) waits for that uid’s closes only', async () => {
    const f = fakeClose();
    const c = new TapCloser(f.fn);
    let nobodySettled = false;
    let rootSettled = false;
    await c.settled(65534); // nothing pending: at once
    c.close(20, 65534);
    c.close(21, 0);
    c.close(22, 65534);
    void c.settled(65534).then(() => (nobodySettled = true));
    void c.settled(0).then(() => (rootSettled = true));
    f.calls[1]!.finish(); // root's
    await tick();
    expect([nobodySettled, rootSettled]).toEqual([false, true]);
    f.calls[0]!.finish();
    await tick();
    expect(nobodySettled).toBe(false); // fd 22 still to close
    f.calls[2]!.finish();
    await tick();
    expect(nobodySettled).toBe(true);
  });
});
