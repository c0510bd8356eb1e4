/**
 * Who may do what. Management (up/down) needs root or group "vnet". A tap on a vnet network's
 * bridge needs the network's allow-users/allow-groups (none given: every local user) and no
 * matching `deny` in bridge.conf; a tap on any other bridge needs bridge.conf to allow it, read as
 * the caller would read it. Identity is always the kernel's (SO_PEERCRED), plus the caller's
 * groups.
 */
import path from 'node:path';
import { VnetError } from '../api/errors.js';
import type { Identity } from '../identity/nss.js';
import type { PeerCred } from '../model.js';
import { evaluateAcl } from '../qemu/acl.js';
import type { NetworkSpec } from '../spec/spec.js';
import { callerCred, CallerIdentityError } from '../sys/proc.js';
import { loadAsCaller, type Cred } from '../sys/read-as.js';

export const ADMIN_GROUP = 'vnet';


export function credOf(peer: PeerCred): Cred {
  if (peer.groups) return { uid: peer.uid, gids: [...new Set([peer.gid, ...peer.groups])] };
  try {
    return callerCred(peer);
  } catch (err) {
    if (err instanceof CallerIdentityError) throw new VnetError('EACCES', `cannot establish the caller's identity: ${err.message}`, { cause: err });
    throw err;
  }
}

/** Root, or a member of group "vnet" (a name NSS resolves: local, LDAP, sssd...). */
export async function isAdmin(peer: PeerCred, identity: Identity): Promise<boolean> {
  if (peer.uid === 0) return true;
  const gid = await identity.gidOf(ADMIN_GROUP);
  return gid !== undefined && credOf(peer).gids.includes(gid);
}

/**
 * A network's own allow-users / allow-groups. Neither set: every local user. Root is always
 * allowed. Names resolve through NSS; a name that does not resolve grants nothing. Names are
 * looked up only when one has to be (not for a network open to all, nor for root).
 */
export async function networkAllows(
  def: { allowUsers?: string[] | undefined; allowGroups?: string[] | undefined; name?: string },
  cred: Cred,
  identity: Identity,
): Promise<{ allowed: boolean; reason: string }> {
  const label = def.name ? `network ${def.name}` : 'the network';
  if (def.allowUsers === undefined && def.allowGroups === undefined) return { allowed: true, reason: `${label} allows every local user` };
  if (cred.uid === 0) return { allowed: true, reason: `${label}: root is always allowed` };
  for (const user of def.allowUsers ?? []) if ((await identity.uidOf(user)) === cred.uid) return { allowed: true, reason: `${label} allows user ${user}` };
  for (const group of def.allowGroups ?? []) {
    const gid = await identity.gidOf(group);
    if (gid !== undefined && cred.gids.includes(gid)) return { allowed: true, reason: `${label} allows group ${group}` };
  }
  const users = (def.allowUsers ?? []).join(', ') || 'none';
  const groups = (def.allowGroups ?? []).join(', ') || 'none';
  return { allowed: false, reason: `access denied: ${label} allows users [${users}] and groups [${groups}], not uid ${cred.uid}` };
}

/**
 * May `caller` have a tap on `bridge`? `spec` is the vnet network on that bridge, if any. The
 * bridge.conf check of a bridge vnet does not manage is the stock helper's own rule; checking that
 * such a bridge exists and is one is the tap path's.
 */
export async function authorizeTap(bridge: string, spec: NetworkSpec | undefined, caller: PeerCred, qemuConfDir: string, identity: Identity): Promise<void> {
  const cred = credOf(caller);
  const acl = evaluateAcl(bridge, (p) => loadAsCaller(p, cred), { root: path.join(qemuConfDir, 'bridge.conf') });
  if (spec) {
    if (acl.denied) throw new VnetError('EACCES', acl.reason);
    if (spec.owner.kind === 'user') {
      // by uid, never by name; and the refusal names neither the network nor who may use it
      const { uid } = spec.owner;
      if (cred.uid !== 0 && cred.uid !== uid && !(spec.access.allowUids ?? []).includes(cred.uid))
        throw new VnetError('EACCES', `access denied: ${bridge} is another user's network, not open to uid ${cred.uid}`);
      return;
    }
    const allowed = await networkAllows({ name: spec.name, ...spec.access }, cred, identity);
    if (!allowed.allowed) throw new VnetError('EACCES', allowed.reason);
    return;
  }
  if (!acl.allowed) throw new VnetError('EACCES', acl.reason);
}
