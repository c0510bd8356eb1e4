/**
 * Who may do what. Management (up/down) needs root or group "vnet". A tap on a vnet network's
 * bridge needs the network's allow-users/allow-groups (none given: every local user) and no
 * matching `deny` in bridge.conf; a tap on any other bridge needs bridge.conf to allow it, read as
 * the caller would read it. Identity is always the kernel's (SO_PEERCRED), plus the caller's
 * groups.
 */
import path from 'node:path';
import { groupIdOf, readIdLookups, type IdLookups } from '../identity/accounts.js';
import type { PeerCred } from '../model.js';
import { evaluateAcl } from '../qemu/acl.js';
import type { NetworkSpec } from '../spec/spec.js';
import { callerCred, CallerIdentityError } from '../sys/proc.js';
import { loadAsCaller, type Cred } from '../sys/read-as.js';

export const ADMIN_GROUP = 'vnet';

export class AccessError extends Error {
  override name = 'AccessError';
  constructor(
    /** EACCES (refused), ENODEV (no such bridge) */
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function credOf(peer: PeerCred): Cred {
  if (peer.groups) return { uid: peer.uid, gids: [...new Set([peer.gid, ...peer.groups])] };
  try {
    return callerCred(peer);
  } catch (err) {
    if (err instanceof CallerIdentityError) throw new AccessError('EACCES', `cannot establish the caller's identity: ${err.message}`, { cause: err });
    throw err;
  }
}

export function isAdmin(peer: PeerCred): boolean {
  if (peer.uid === 0) return true;
  const gid = groupIdOf(ADMIN_GROUP);
  return gid !== undefined && credOf(peer).gids.includes(gid);
}

/**
 * A network's own allow-users / allow-groups. Neither set: every local user. Root is always allowed.
 * Names that do not resolve grant nothing. `lookups` defaults to /etc/passwd and /etc/group, read
 * only when a name has to be resolved (not for a network open to all, nor for root).
 */
export function networkAllows(
  def: { allowUsers?: string[] | undefined; allowGroups?: string[] | undefined; name?: string },
  cred: Cred,
  given?: IdLookups,
): { allowed: boolean; reason: string } {
  const label = def.name ? `network ${def.name}` : 'the network';
  if (def.allowUsers === undefined && def.allowGroups === undefined)
    return { allowed: true, reason: `${label} allows every local user` };
  if (cred.uid === 0) return { allowed: true, reason: `${label}: root is always allowed` };
  const lookups = given ?? readIdLookups();
  for (const user of def.allowUsers ?? [])
    if (lookups.uidOf(user) === cred.uid) return { allowed: true, reason: `${label} allows user ${user}` };
  for (const group of def.allowGroups ?? []) {
    const gid = lookups.gidOf(group);
    if (gid !== undefined && cred.gids.includes(gid)) return { allowed: true, reason: `${label} allows group ${group}` };
  }
  const users = (def.allowUsers ?? []).join(', ') || 'none';
  const groups = (def.allowGroups ?? []).join(', ') || 'none';
  return { allowed: false, reason: `access denied: ${label} allows users [${users}] and groups [${groups}], not uid ${cred.uid}` };
}

/**
 * May `caller` have a tap on `bridge`? `spec` is the vnet network on that bridge, if any. The
 * bridge.conf check of a bridge vnet does not manage is the stock helper's own rule; checking that
 * such a bridge exists and is one is the tap path's (the kernel says so when the tap is attached).
 */
export function authorizeTap(bridge: string, spec: NetworkSpec | undefined, caller: PeerCred, qemuConfDir: string): void {
  const cred = credOf(caller);
  const acl = evaluateAcl(bridge, (p) => loadAsCaller(p, cred), { root: path.join(qemuConfDir, 'bridge.conf') });
  if (spec) {
    if (acl.denied) throw new AccessError('EACCES', acl.reason);
    const allowed = networkAllows({ name: spec.name, ...spec.access }, cred);
    if (!allowed.allowed) throw new AccessError('EACCES', allowed.reason);
    return;
  }
  if (!acl.allowed) throw new AccessError('EACCES', acl.reason);
}

export type { IdLookups };
export { readIdLookups };
