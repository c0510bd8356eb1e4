/**
 * vnetd's state file ($VNET_RUNTIME_DIR/state.json): the reconciler's journal and the runtime's
 * records (state, pin, taps), saved after every change so that a restarted vnetd adopts its own
 * bridges, rules and taps and never touches anything it did not make. Reads the previous
 * version's format (1) too, for an upgrade in place.
 */
import { readFile } from 'node:fs/promises';
import type { Level } from '../desired/model.js';
import type { NetworkState, TapInfo } from '../model.js';
import { emptyJournal, journalFromJson, journalToJson, type Journal, type JournalJson } from '../reconcile/journal.js';
import { writeFileAtomic } from '../sys/atomic-file.js';
import { Mutex } from '../sys/mutex.js';

export interface SavedNetwork {
  state: NetworkState;
  pinned: boolean;
  bridge: string;
  level?: Level;
  taps: TapInfo[];
}

export interface SavedState {
  journal: Journal;
  networks: Record<string, SavedNetwork>;
  /** foreign taps (on bridges vnet does not manage): still counted for quotas */
  foreignTaps: TapInfo[];
  /** autostart networks already brought up since the host started (the file lives in /run) */
  autostarted: string[];
}

interface FileV2 extends JournalJson {
  version: 2;
  networks: Record<string, SavedNetwork>;
  foreignTaps?: TapInfo[];
  autostarted?: string[];
}

/** The format vnet 0.1 wrote. */
interface FileV1 {
  version: 1;
  owned: Record<string, number>;
  pending?: string[];
  forwardingByVnet: boolean;
  nat: unknown[];
  networks: Record<string, Omit<SavedNetwork, 'level'>>;
}

export function parseStateFile(text: string): SavedState {
  const v = JSON.parse(text) as FileV1 | FileV2;
  if (typeof v !== 'object' || v === null || typeof v.owned !== 'object' || typeof v.networks !== 'object') throw new Error('unexpected shape');
  if (v.version === 1) {
    // v1 kept "forwarding was switched on by vnet" as a flag: the value to restore is 0
    const sysctls: Record<string, string> = v.forwardingByVnet ? { 'net/ipv4/ip_forward': '0' } : {};
    return { journal: journalFromJson({ owned: v.owned, pending: v.pending ?? [], sysctls }), networks: v.networks, foreignTaps: [], autostarted: [] };
  }
  if (v.version !== 2 || !Array.isArray(v.pending) || typeof v.sysctls !== 'object') throw new Error(`unknown version ${String((v as { version?: unknown }).version)}`);
  return { journal: journalFromJson(v), networks: v.networks, foreignTaps: v.foreignTaps ?? [], autostarted: Array.isArray(v.autostarted) ? v.autostarted.map(String) : [] };
}

export class StateFile {
  private readonly saving = new Mutex();

  constructor(readonly file: string) {}

  async load(): Promise<SavedState> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { journal: emptyJournal(), networks: {}, foreignTaps: [], autostarted: [] };
      throw err;
    }
    try {
      return parseStateFile(text);
    } catch (err) {
      throw new Error(`state file ${this.file} is corrupt (${(err as Error).message}); move it aside to start afresh`, { cause: err });
    }
  }

  /** Save; writes are queued, and each takes its snapshot (`state()`) when its turn comes. */
  save(state: () => SavedState): Promise<void> {
    return this.saving.run(async () => {
      const s = state();
      const file: FileV2 = { version: 2, ...journalToJson(s.journal), networks: s.networks, foreignTaps: s.foreignTaps, autostarted: s.autostarted };
      await writeFileAtomic(this.file, JSON.stringify(file, null, 1) + '\n', { mode: 0o644 });
    });
  }
}
