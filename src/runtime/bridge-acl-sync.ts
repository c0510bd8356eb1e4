/**
 * bridge.conf upkeep: an `allow` line in vnet.conf for every network that lets every local user
 * in (a network with allow-users/allow-groups must not be opened to the stock setuid helper),
 * included once from bridge.conf. Writes only when the set of open bridges changes; a failure is
 * logged, not fatal, and retried at the next sync.
 */
import type { Logger } from 'pino';
import type { BridgeConf } from '../qemu/bridge-conf.js';
import type { NetworkSpec } from '../spec/spec.js';

export class BridgeAclSync {
  /** the open bridges last written */
  private written?: string;

  constructor(
    private readonly conf: BridgeConf,
    private readonly log: Logger,
  ) {}

  async sync(specs: Iterable<NetworkSpec>): Promise<void> {
    const open = [...specs].filter((s) => !s.access.allowUsers && !s.access.allowGroups).map((s) => s.bridge.name).sort();
    const key = open.join(' ');
    if (key === this.written) return; // nothing changed: no file I/O (taps and status call this)
    this.written = key;
    try {
      await this.conf.setBridges(open);
    } catch (err) {
      this.written = undefined;
      this.log.warn({ err }, `could not update ${this.conf.bridgeConfPath}`);
    }
  }
}
