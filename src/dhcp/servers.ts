/**
 * The DHCP/DNS backend: one supervised dnsmasq per network (supervisor.ts), started with the
 * configuration the desired state gives. Events: 'started' (config), 'stopped' (network),
 * 'failed' (network, reason) when a server keeps dying and its supervisor gives up.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { DhcpConfig } from '../desired/model.js';
import type { DhcpBackend } from '../reconcile/backends.js';
import { DnsmasqSupervisor } from './supervisor.js';

export interface ServerEvents {
  started: [DhcpConfig];
  stopped: [string];
  failed: [network: string, reason: string];
}

export class DnsmasqServers extends EventEmitter<ServerEvents> implements DhcpBackend {
  private readonly servers = new Map<string, { config: DhcpConfig; sup: DnsmasqSupervisor }>();

  constructor(private readonly opts: { binary?: string; log: Logger }) {
    super();
  }

  running(): Map<string, DhcpConfig> {
    return new Map([...this.servers].map(([name, s]) => [name, s.config]));
  }

  async start(config: DhcpConfig): Promise<void> {
    await this.stop(config.network);
    const sup = new DnsmasqSupervisor({
      name: config.network,
      confPath: config.confPath,
      config: config.text,
      ...(this.opts.binary ? { binary: this.opts.binary } : {}),
      logger: this.opts.log.child({ dnsmasq: config.network }),
      ...(config.leaseFile ? { leaseFile: config.leaseFile } : {}),
    });
    sup.on('failed', (reason: string) => {
      if (this.servers.get(config.network)?.sup === sup) this.emit('failed', config.network, reason);
    });
    await sup.start();
    this.servers.set(config.network, { config, sup });
    this.emit('started', config);
  }

  async stop(network: string): Promise<void> {
    const s = this.servers.get(network);
    if (!s) return;
    this.servers.delete(network);
    await s.sup.stop();
    this.emit('stopped', network);
  }

  /** Stop every server (vnetd exits; a restarted one starts them again). */
  async stopAll(): Promise<void> {
    for (const name of [...this.servers.keys()]) await this.stop(name);
  }
}
