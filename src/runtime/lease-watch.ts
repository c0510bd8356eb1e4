/**
 * Leases as events: while a network's DHCP server runs, its lease file is watched and each lease
 * that appears or goes is reported ('added', 'removed' with the network's name).
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { DhcpConfig } from '../desired/model.js';
import type { LeaseCache } from '../dhcp/lease-cache.js';
import { watchLeases, type LeaseWatcher } from '../dhcp/leases.js';
import type { Lease } from '../model.js';

export interface LeaseEvents {
  added: [network: string, lease: Lease];
  removed: [network: string, lease: Lease];
}

export class LeaseWatch extends EventEmitter<LeaseEvents> {
  private readonly watchers = new Map<string, { file: string; watcher: LeaseWatcher }>();

  /** `cache`: the one parsed copy of each lease file, shared with status and `vnet leases` */
  constructor(
    private readonly log: Logger,
    private readonly cache: LeaseCache,
  ) {
    super();
  }

  started(config: DhcpConfig): void {
    this.stopped(config.network);
    if (!config.leaseFile) return;
    const network = config.network;
    const file = config.leaseFile;
    const read = async (f: string) => {
      const s = await this.cache.get(f);
      if (s.problem) throw new Error(s.problem);
      return s.leases;
    };
    try {
      const watcher = watchLeases(file, (e) => this.emit(e.type, network, e.lease), {
        read,
        onError: (err) => this.log.warn({ err, network }, 'could not read the lease file'),
      });
      this.watchers.set(network, { file, watcher });
    } catch (err) {
      this.log.warn({ err, network }, 'cannot watch the lease file');
    }
  }

  stopped(network: string): void {
    const w = this.watchers.get(network);
    if (!w) return;
    w.watcher.close();
    this.cache.forget(w.file);
    this.watchers.delete(network);
  }

  close(): void {
    for (const name of [...this.watchers.keys()]) this.stopped(name);
  }
}
