/**
 * Turns per uid on the socket: at most `perKey` requests of one uid are being served at once,
 * across all of that uid's connections; the others wait, in arrival order, for one of them to
 * end. The daemon's lock serves whoever asks first, so without this one uid with 32
 * connections could queue 32 requests in front of everyone else; with it, at most `perKey`.
 * A turn also covers writing the reply: a uid whose clients do not read slows only itself.
 */
export class Turns {
  private readonly running = new Map<number, number>();
  private readonly waiting = new Map<number, Array<() => void>>();

  constructor(private readonly perKey: number) {}

  /** Run `fn` in one of `key`'s turns. */
  async run<T>(key: number, fn: () => Promise<T>): Promise<T> {
    const n = this.running.get(key) ?? 0;
    if (n < this.perKey) this.running.set(key, n + 1);
    else await new Promise<void>((resolve) => this.queue(key).push(resolve));
    try {
      return await fn();
    } finally {
      this.release(key);
    }
  }

  /** requests of `key` being served now */
  active(key: number): number {
    return this.running.get(key) ?? 0;
  }

  private queue(key: number): Array<() => void> {
    let q = this.waiting.get(key);
    if (!q) this.waiting.set(key, (q = []));
    return q;
  }

  /** The turn passes to the next waiting request of the same key, or is given back. */
  private release(key: number): void {
    const q = this.waiting.get(key);
    const next = q?.shift();
    if (q?.length === 0) this.waiting.delete(key);
    if (next) {
      next();
      return;
    }
    const n = (this.running.get(key) ?? 1) - 1;
    if (n <= 0) this.running.delete(key);
    else this.running.set(key, n);
  }
}
