/**
 * Every tap vnetd handed out and that still exists: on which network (or on a bridge vnet does
 * not manage), for which uid and process. Counts per uid for the quota; forgets a tap when the
 * kernel reports its link gone, or when a re-listing of links no longer has it (a lost event).
 */
import { EventEmitter } from 'node:events';
import type { TapInfo } from '../model.js';

export interface TapEntry extends TapInfo {
  /** the vnet network whose bridge it is on; undefined for a bridge vnet does not manage */
  network?: string;
}

export interface TapEvents {
  added: [TapEntry];
  removed: [TapEntry];
}

export class TapRegistry extends EventEmitter<TapEvents> {
  private readonly taps = new Map<string, TapEntry>();

  /**
   * Count a tap from now on. Its 'added' event waits for announce(): the hand-off replies first,
   * but the tap must count at once (for quotas, and so no idle-down queued behind the hand-off
   * takes its network down).
   */
  add(tap: TapEntry): void {
    this.taps.set(tap.name, tap);
  }

  /** Tell listeners about a tap add() counted (if it still exists). */
  announce(tap: TapEntry): void {
    if (this.taps.get(tap.name) === tap) this.emit('added', tap);
  }

  /** Adopt a tap recorded before a restart (no event: nothing changed for the outside). */
  restore(tap: TapEntry): void {
    this.taps.set(tap.name, tap);
  }

  get size(): number {
    return this.taps.size;
  }

  countFor(uid: number): number {
    let n = 0;
    for (const t of this.taps.values()) if (t.uid === uid) n += 1;
    return n;
  }

  onNetwork(network: string): TapEntry[] {
    return [...this.taps.values()].filter((t) => t.network === network);
  }

  all(): TapEntry[] {
    return [...this.taps.values()];
  }

  /** Taps of `network` live on without it (a forced down): they still count for quotas. */
  detach(network: string): void {
    for (const t of this.taps.values()) if (t.network === network) delete t.network;
  }

  /** A link is gone: forget the tap it was (same name and ifindex). */
  linkGone(name: string, index: number): TapEntry | undefined {
    const t = this.taps.get(name);
    if (!t || t.ifindex !== index) return undefined;
    this.taps.delete(name);
    this.emit('removed', t);
    return t;
  }

  /** Forget taps the kernel no longer has (their removal event was lost). */
  prune(links: ReadonlyArray<{ name: string; index: number }>): void {
    for (const t of [...this.taps.values()]) {
      if (!links.some((l) => l.name === t.name && l.index === t.ifindex)) this.linkGone(t.name, t.ifindex);
    }
  }
}
