/**
 * What vnet has done to the host that the host itself cannot tell: which bridges vnet created
 * (so it never adopts or deletes one it did not make), which creations had begun (a crash
 * between the kernel call and the record), and the sysctls it changed with their old values.
 * A pure reducer over steps: the applier feeds it every step before and after it runs.
 */
import type { Step } from './steps.js';

export interface Journal {
  /** bridge name → ifindex of the bridges vnet created */
  owned: Map<string, number>;
  /** bridges whose creation had begun (adopted after a crash only if they carry vnet's MAC) */
  pending: Set<string>;
  /** sysctl key → the value it had before vnet changed it */
  sysctls: Map<string, string>;
}

export type JournalEvent =
  | { phase: 'before' }
  | { phase: 'done'; /** ifindex of a bridge just created */ index?: number }
  | { phase: 'failed' };

export function emptyJournal(): Journal {
  return { owned: new Map(), pending: new Set(), sysctls: new Map() };
}

function copy(j: Journal): Journal {
  return { owned: new Map(j.owned), pending: new Set(j.pending), sysctls: new Map(j.sysctls) };
}

/** The journal after `event` of `step`; the same object when nothing changes (no write needed). */
export function record(j: Journal, step: Step, event: JournalEvent): Journal {
  switch (step.kind) {
    case 'create-bridge': {
      const next = copy(j);
      if (event.phase === 'before') next.pending.add(step.bridge);
      else {
        next.pending.delete(step.bridge);
        // failed: the name was taken (somebody else's) or a half-made one the rollback deletes
        if (event.phase === 'done' && event.index !== undefined) next.owned.set(step.bridge, event.index);
      }
      return next;
    }
    case 'delete-bridge': {
      if (event.phase !== 'done' || !j.owned.has(step.bridge)) return j;
      const next = copy(j);
      next.owned.delete(step.bridge);
      return next;
    }
    case 'set-sysctl': {
      // write-ahead: the old value is known before the write, so a crash after it can still restore
      if (event.phase === 'before' && step.restore !== undefined && !j.sysctls.has(step.key)) {
        const next = copy(j);
        next.sysctls.set(step.key, step.restore);
        return next;
      }
      if (event.phase === 'done' && j.sysctls.get(step.key) === step.value) {
        const next = copy(j);
        next.sysctls.delete(step.key); // put back as it was: nothing left to restore
        return next;
      }
      return j;
    }
    default:
      return j;
  }
}

/** Adopt what a crash left between `before` and `done` of a bridge's creation (see reconcile). */
export function adopt(j: Journal, bridge: string, index: number): Journal {
  const next = copy(j);
  next.pending.delete(bridge);
  next.owned.set(bridge, index);
  return next;
}

/** Forget owned bridges that are gone (or replaced: another ifindex) and pending ones that were settled. */
export function prune(j: Journal, links: ReadonlyArray<{ name: string; index: number }>): Journal {
  const next = copy(j);
  for (const [name, index] of j.owned) if (!links.some((l) => l.name === name && l.index === index)) next.owned.delete(name);
  next.pending.clear();
  return next;
}

export interface JournalJson {
  owned: Record<string, number>;
  pending: string[];
  sysctls: Record<string, string>;
}

export function journalToJson(j: Journal): JournalJson {
  return { owned: Object.fromEntries(j.owned), pending: [...j.pending], sysctls: Object.fromEntries(j.sysctls) };
}

export function journalFromJson(v: JournalJson): Journal {
  return { owned: new Map(Object.entries(v.owned)), pending: new Set(v.pending), sysctls: new Map(Object.entries(v.sysctls)) };
}
