/**
 * vnetd's copies of handed-out tap fds are closed here, never on the main thread.
 *
 * Whoever drops a tap's last reference pays for its teardown inside close(): 17-30 ms, more
 * under load, under the kernel's rtnl lock. vnetd's copy is closed right after the sendmsg
 * that passes the tap, yet the client that sendmsg wakes often runs first (it preempts vnetd)
 * and may close its copy at once: in a tight hand-off loop about a quarter of the taps had
 * vnetd's close as their last. So these closes run on libuv's thread pool, at most
 * MAX_RUNNING at a time (the pool's other threads stay free for file I/O), and a uid's next
 * tap waits until that uid's earlier closes are done (settled): a tap its client closed is
 * then gone before the uid asks again, so the quota counts only taps clients still hold, and
 * a client that closes its taps at once is paced by their teardown, as it is when it pays for
 * that teardown in its own close.
 */
import { close } from 'node:fs';

/** closes running on the thread pool at once (it has 4 threads) */
const MAX_RUNNING = 2;

export type CloseFn = (fd: number, done: () => void) => void;

export class TapCloser {
  private running = 0;
  private readonly queue: Array<{ fd: number; key: number }> = [];
  /** per key (uid): closes queued or running */
  private readonly pending = new Map<number, number>();
  private readonly waiters = new Map<number, Array<() => void>>();

  constructor(
    private readonly closeFn: CloseFn = (fd, done) => close(fd, () => done()),
    private readonly maxRunning = MAX_RUNNING,
  ) {}

  /** Close `fd`, a tap handed to (or meant for) `key`, soon and off the main thread. */
  close(fd: number, key: number): void {
    this.pending.set(key, (this.pending.get(key) ?? 0) + 1);
    this.queue.push({ fd, key });
    this.next();
  }

  /** Resolves once no close for `key` is queued or running (at once when none is). */
  settled(key: number): Promise<void> {
    if (!this.pending.has(key)) return Promise.resolve();
    return new Promise((resolve) => {
      let list = this.waiters.get(key);
      if (!list) this.waiters.set(key, (list = []));
      list.push(resolve);
    });
  }

  /** closes queued or running, in all */
  get size(): number {
    return this.queue.length + this.running;
  }

  private next(): void {
    while (this.running < this.maxRunning && this.queue.length > 0) {
      const { fd, key } = this.queue.shift()!;
      this.running++;
      this.closeFn(fd, () => {
        this.running--;
        this.done(key);
        this.next();
      });
    }
  }

  private done(key: number): void {
    const n = (this.pending.get(key) ?? 1) - 1;
    if (n > 0) {
      this.pending.set(key, n);
      return;
    }
    this.pending.delete(key);
    const list = this.waiters.get(key);
    this.waiters.delete(key);
    for (const resolve of list ?? []) resolve();
  }
}
