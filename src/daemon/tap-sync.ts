/**
 * Keeping the tap registry true to the kernel. A tap is forgotten when its RTM_DELLINK arrives;
 * but the kernel drops link events when they come faster than they are read, and a lost
 * RTM_DELLINK would leave a ghost tap counted against its owner's quota. So while taps exist
 * (never on an idle machine: no timer then), the link socket's drop counter is looked at every
 * 3 s, and links are listed again whenever it moved or the socket reported an error.
 */
import type { Logger } from 'pino';
import type { TapRegistry } from '../runtime/tap-registry.js';
import type { Mutex } from '../sys/mutex.js';

export interface TapSyncDeps {
  taps: TapRegistry;
  mutex: Mutex;
  log: Logger;
  /** the kernel's links now */
  listLinks(): Promise<ReadonlyArray<{ name: string; index: number }>>;
  /** how many link events the socket lost so far */
  drops(): number;
}

const CHECK_MS = 3000;

export class TapSync {
  private timer?: NodeJS.Timeout;
  private seenDrops = 0;
  private closed = false;

  constructor(private readonly d: TapSyncDeps) {}

  /** Forget taps the kernel no longer has (a lost event). The caller holds the mutex. */
  async prune(): Promise<void> {
    this.d.taps.prune(await this.d.listLinks());
  }

  /** Prune under the mutex, in the background. */
  resync(): void {
    if (this.closed) return;
    void this.d.mutex.run(() => this.prune()).catch((err) => this.d.log.error({ err }, 'tap resync failed'));
  }

  /** Watch the drop counter while taps exist; stops by itself when the last goes. */
  watch(): void {
    if (this.timer || this.closed) return;
    this.timer = setInterval(() => {
      if (this.d.taps.size === 0) {
        clearInterval(this.timer);
        this.timer = undefined;
        return;
      }
      const drops = this.d.drops();
      if (drops === this.seenDrops) return;
      this.seenDrops = drops;
      this.d.log.warn({ drops }, 'link events were lost: re-listing links');
      this.resync();
    }, CHECK_MS);
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
  }
}
