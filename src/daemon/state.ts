/**
 * What vnetd has applied, saved after every change so that a restarted vnetd adopts
 * its own bridges and rules and never touches anything it did not make.
 */
import { readFile } from 'node:fs/promises';
import type { NetworkState, TapInfo } from '../model.js';
import type { NatNetwork } from '../nat/ruleset.js';
import { writeFileAtomic } from '../sys/atomic-file.js';

export interface PersistedNetwork {
  state: NetworkState;
  pinned: boolean;
  bridge: string;
  taps: TapInfo[];
}

export interface PersistedState {
  version: 1;
  /** bridge name → ifindex of the bridges vnet created */
  owned: Record<string, number>;
  /** bridges whose creation had begun when this was written */
  pending?: string[];
  /** vnet switched net.ipv4.ip_forward on and must switch it off with the last NAT network */
  forwardingByVnet: boolean;
  /** the NAT networks in vnet's nft table */
  nat: NatNetwork[];
  networks: Record<string, PersistedNetwork>;
}

export class StateStore {
  constructor(readonly file: string) {}

  async load(): Promise<PersistedState | undefined> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    try {
      const v = JSON.parse(text) as PersistedState;
      if (v.version !== 1 || typeof v.owned !== 'object' || !Array.isArray(v.nat) || typeof v.networks !== 'object')
        throw new Error('unexpected shape');
      return v;
    } catch (err) {
      throw new Error(`state file ${this.file} is corrupt (${(err as Error).message}); move it aside to start afresh`, { cause: err });
    }
  }

  async save(state: PersistedState): Promise<void> {
    await writeFileAtomic(this.file, JSON.stringify(state, null, 1) + '\n', { mode: 0o644 });
  }
}
