/**
 * What vnet has done to the host that the host itself cannot tell: which bridges vnet created
 * (so it never adopts or deletes one it did not make), which creations had begun (a crash
 * between the kernel call and the record), the sysctls it changed with their old values, and
 * the addresses it put on bridges it does not own (forward = "bridge": it removes those, and
 * never one the bridge's owner gave it).
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
  /** bridge vnet does not own → the addresses ("10.0.0.1/24") vnet added to it */
  addresses: Map<string, Set<string>>;
}

export type JournalEvent =
  | { phase: 'before' }
  | { phase: 'done'; /** ifindex of a bridge just created */ index?: number }
  | { phase: 'failed' };

export function emptyJournal(): Journal {
  return { owned: new Map(), pending: new Set(), sysctls: new Map(), addresses: new Map() };
}

function copy(j: Journal): Journal {
  const addresses = new Map([...j.addresses].map(([b, set]) => [b, new Set(set)]));
  return { owned: new Map(j.owned), pending: new Set(j.pending), sysctls: new Map(j.sysctls), addresses };
}

/** The addresses vnet recorded adding to `bridge` (one it does not own). */
export function addedAddresses(j: Journal, bridge: string): ReadonlySet<string> {
  return j.addresses.get(bridge) ?? new Set();
}

function withAddress(j: Journal, bridge: string, cidr: string, present: boolean): Journal {
  if (addedAddresses(j, bridge).has(cidr) === present) return j;
  const next = copy(j);
  const set = next.addresses.get(bridge) ?? new Set<string>();
  if (present) set.add(cidr);
  else set.delete(cidr);
  if (set.size) next.addresses.set(bridge, set);
  else next.addresses.delete(bridge);
  return next;
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
    case 'add-address': {
      if (!step.foreign) return j;
      // write-ahead: recorded before the kernel call, so a crash right after it still knows the
      // address is vnet's; a failed add (EEXIST: somebody else's) is not vnet's
      const cidr = `${step.address}/${step.prefix}`;
      if (event.phase === 'before') return withAddress(j, step.bridge, cidr, true);
      if (event.phase === 'failed') return withAddress(j, step.bridge, cidr, false);
      return j;
    }
    case 'delete-address':
      return event.phase === 'done' ? withAddress(j, step.bridge, `${step.address}/${step.prefix}`, false) : j;
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

/**
 * Forget owned bridges that are gone (or replaced: another ifindex), pending ones that were
 * settled, and added addresses that are no longer there (their bridge went, or someone removed them).
 */
export function prune(
  j: Journal,
  links: ReadonlyArray<{ name: string; index: number }>,
  addresses: ReadonlyArray<{ index: number; address: string; prefix: number }>,
): Journal {
  const next = copy(j);
  for (const [name, index] of j.owned) if (!links.some((l) => l.name === name && l.index === index)) next.owned.delete(name);
  next.pending.clear();
  for (const [bridge, set] of j.addresses) {
    const link = links.find((l) => l.name === bridge);
    const there = new Set(addresses.filter((a) => a.index === link?.index).map((a) => `${a.address}/${a.prefix}`));
    const kept = new Set([...set].filter((c) => there.has(c)));
    if (kept.size) next.addresses.set(bridge, kept);
    else next.addresses.delete(bridge);
  }
  return next;
}

export interface JournalJson {
  owned: Record<string, number>;
  pending: string[];
  sysctls: Record<string, string>;
  /** absent in files written before vnet put addresses on bridges it does not own */
  addresses?: Record<string, string[]>;
}

export function journalToJson(j: Journal): JournalJson {
  const addresses = Object.fromEntries([...j.addresses].map(([b, set]) => [b, [...set].sort()]));
  return { owned: Object.fromEntries(j.owned), pending: [...j.pending], sysctls: Object.fromEntries(j.sysctls), addresses };
}

export function journalFromJson(v: JournalJson): Journal {
  const addresses = new Map(Object.entries(v.addresses ?? {}).filter(([, l]) => Array.isArray(l)).map(([b, l]) => [b, new Set(l.map(String))]));
  return { owned: new Map(Object.entries(v.owned)), pending: new Set(v.pending), sysctls: new Map(Object.entries(v.sysctls)), addresses };
}
