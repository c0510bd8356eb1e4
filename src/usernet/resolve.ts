/**
 * Who sees a user network, and what a name said by a caller stands for. Pure.
 *
 * The rule, in order, for a name said by uid U:
 *   1. "OWNER:NAME": that user network, when U may see it (root, its owner, the users it lists).
 *   2. an admin network of that name, for everyone: a user's network never shadows one;
 *   3. an admin network on a bridge of that name;
 *   4. U's own network of that name;
 *   5. a user network on a bridge of that name, when U may see it.
 * `vnet create` refuses a name an admin network or bridge has, so 4 is reached by its owner's bare
 * name unless the admin later takes the name; OWNER:NAME always reaches it. A network U may not
 * see is answered as one that does not exist.
 */
import type { NetworkSpec } from '../spec/spec.js';
import { isQualified } from './names.js';

/** Anyone unknown (a D-Bus property read has no caller): sees only the admin's networks. */
export const NOBODY = -1;

/** May uid see (and use) this network? Admin networks: everyone (their own allow lists guard taps). */
export function visibleTo(spec: NetworkSpec, uid: number): boolean {
  if (spec.owner.kind === 'admin') return true;
  return uid === 0 || uid === spec.owner.uid || (spec.access.allowUids ?? []).includes(uid);
}

export function isUserNetwork(spec: NetworkSpec): boolean {
  return spec.owner.kind === 'user';
}

/** The network `said` names for `uid` among `specs` (admin and user networks, keyed by their full names), or undefined. */
export function resolveName(said: string, uid: number, specs: ReadonlyMap<string, NetworkSpec>): NetworkSpec | undefined {
  const all = [...specs.values()];
  const admin = all.filter((s) => s.owner.kind === 'admin');
  const users = all.filter((s) => s.owner.kind === 'user' && visibleTo(s, uid));
  if (isQualified(said)) return users.find((s) => s.name === said);
  return (
    admin.find((s) => s.name === said) ??
    admin.find((s) => s.bridge.name === said) ??
    users.find((s) => s.owner.kind === 'user' && s.owner.uid === uid && shortName(s) === said) ??
    users.find((s) => s.bridge.name === said)
  );
}

/** A user network's name as its owner says it ("lab" of "alice:lab"); an admin network's name. */
export function shortName(spec: NetworkSpec): string {
  return spec.owner.kind === 'user' ? spec.name.slice(spec.name.indexOf(':') + 1) : spec.name;
}
