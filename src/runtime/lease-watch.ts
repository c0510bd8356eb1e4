/**
 * Leases as events: while a network's DHCP server runs, its lease file is watched and each lease
 * that appears or goes is reported ('added', 'removed' with the network's name).
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { DhcpConfig } from '../desired/model.js';
import { watchLeases, type LeaseWatcher } from '../dhcp/leases.js';
import type { Lease } from '../model.js';

export interface LeaseEvents {
  added: [network: string, lease: Lease];
  removed: [network: string, lease: Lease];
}

export class LeaseWatch extends EventEmitter<LeaseEvents> {
  private readonly watchers = new Map<string, LeaseWatcher>();

  constructor(private readonly log: Logger) {
    super();
  }

  started(config: DhcpConfig): void {
    this.stopped(config.network);
    if (!config.leaseFile) return;
    const network = config.network;
    try {
      this.watchers.set(
        network,
        watchLeases(config.leaseFile, (e) => this.emit(e.type, network, e.lease), {
          onError: (err) => this.log.warn({ err, network }, 'could not read the lease file'),
        }),
      );
    } catch (err) {
      this.log.warn({ err, network }, 'cannot watch the lease file');
    }
  }

  stopped(network: string): void {
    this.watchers.get(network)?.close();
    this.watchers.delete(network);
  }

  close(): void {
    for (const name of [...this.watchers.keys()]) this.stopped(name);
  }
}
