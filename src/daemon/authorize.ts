/**
 * Who may do what. Management (up/down) needs root or group "vnet". A tap on a vnet
 * network's bridge needs the network's allow-users/allow-groups (none given: every
 * local user) and no matching `deny` in bridge.conf; a tap on any other bridge needs
 * bridge.conf to allow it, read as the caller would read it. Identity is always the
 * kernel's (SO_PEERCRED), plus the caller's groups from /proc.
 */
import path from 'node:path';
import { callerCred, CallerIdentityError, evaluateAcl, groupIdOf, loadAsCaller, networkAllows, type Cred } from '../helper/acl.js';
import type { NetworkDef, PeerCred } from '../model.js';
import type { Rtnl } from '../netlink/links.js';
import { ServiceError } from './service.js';

export const ADMIN_GROUP = 'vnet';

function credOf(peer: PeerCred): Cred {
  if (peer.groups) return { uid: peer.uid, gids: [...new Set([peer.gid, ...peer.groups])] };
  try {
    return callerCred(peer);
  } catch (err) {
    if (err instanceof CallerIdentityError) throw new ServiceError('EACCES', `cannot establish the caller's identity: ${err.message}`, { cause: err });
    throw err;
  }
}

export function isAdmin(peer: PeerCred): boolean {
  if (peer.uid === 0) return true;
  const gid = groupIdOf(ADMIN_GROUP);
  return gid !== undefined && credOf(peer).gids.includes(gid);
}

export interface TapRequest {
  bridge: string;
  /** the vnet network whose bridge this is, if any */
  def: NetworkDef | undefined;
  caller: PeerCred;
  qemuConfDir: string;
  rtnl: Rtnl;
}

export async function authorizeTap(req: TapRequest): Promise<void> {
  const cred = credOf(req.caller);
  const acl = evaluateAcl(req.bridge, (p) => loadAsCaller(p, cred), { root: path.join(req.qemuConfDir, 'bridge.conf') });
  if (req.def) {
    if (acl.denied) throw new ServiceError('EACCES', acl.reason);
    const allowed = networkAllows(req.def, cred);
    if (!allowed.allowed) throw new ServiceError('EACCES', allowed.reason);
    return;
  }
  if (!acl.allowed) throw new ServiceError('EACCES', acl.reason);
  // a bridge vnet does not manage (rare): make sure it is one before a tap is made for it
  const link = await req.rtnl.getLinkByName(req.bridge);
  if (!link) throw new ServiceError('ENODEV', `no bridge named ${req.bridge} (and no vnet network uses it)`);
  if (link.kind !== 'bridge') throw new ServiceError('EACCES', `${req.bridge} is not a bridge; taps go only on bridges`);
}
