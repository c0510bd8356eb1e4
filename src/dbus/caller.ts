/**
 * Who sent a D-Bus call: asked of the bus itself (org.freedesktop.DBus.GetConnectionCredentials
 * on the sender's unique name, which the bus daemon took from SO_PEERCRED when the peer
 * connected). Never from the call's arguments.
 */
import { readFile } from 'node:fs/promises';
import dbus from 'dbus-next';
import type { MessageBus, Variant } from 'dbus-next';
import type { PeerCred } from '../model.js';
import { VnetError } from '../api/errors.js';
import { parseProcStatus } from '../sys/proc.js';

export interface BusCredentials {
  uid: number;
  pid: number;
  /** supplementary groups as the bus saw them, when it reports them */
  gids: number[];
}

/** Parse the a{sv} answer of GetConnectionCredentials. */
export function parseCredentials(sender: string, creds: Record<string, Variant>): BusCredentials {
  const uid = creds.UnixUserID?.value;
  const pid = creds.ProcessID?.value;
  if (typeof uid !== 'number' || typeof pid !== 'number')
    throw new VnetError('EPERM', `the bus did not report the uid and pid of ${sender}; refusing the call`);
  const gids = creds.UnixGroupIDs?.value;
  return { uid, pid, gids: Array.isArray(gids) ? gids.filter((g): g is number => typeof g === 'number') : [] };
}

/**
 * The effective gid of `pid` from /proc, if that process still runs as `uid` (the bus
 * does not report the primary group; a pid reused by another user's process is ignored).
 */
async function effectiveGid(pid: number, uid: number): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  // Uid: and Gid: list real, effective, saved and filesystem ids
  const { uids, gids } = parseProcStatus(text);
  return uids[1] === uid ? gids[1] : undefined;
}

/** The PeerCred of bus peer `sender` (a unique name such as ":1.42"). */
export async function callerOf(bus: MessageBus, sender: string): Promise<PeerCred> {
  let reply;
  try {
    reply = await bus.call(
      new dbus.Message({
        destination: 'org.freedesktop.DBus',
        path: '/org/freedesktop/DBus',
        interface: 'org.freedesktop.DBus',
        member: 'GetConnectionCredentials',
        signature: 's',
        body: [sender],
      }),
    );
  } catch (err) {
    const text = (err as { text?: string }).text ?? (err as Error).message;
    throw new VnetError('EPERM', `could not learn who bus peer ${sender} is (${text}); refusing the call`, { cause: err });
  }
  const creds = parseCredentials(sender, (reply?.body[0] ?? {}) as Record<string, Variant>);
  // the effective gid from /proc (if the pid still runs as the uid the bus reported), else one of
  // the groups the bus saw; never an invented one
  const gid = (await effectiveGid(creds.pid, creds.uid)) ?? creds.gids[0];
  if (gid === undefined)
    throw new VnetError(
      'EPERM',
      `could not learn the group of bus peer ${sender} (uid ${creds.uid}, pid ${creds.pid}): the process is gone or changed uid, and the bus reported no groups; refusing the call`,
    );
  // groups: as the bus saw them at connect time, not re-read from /proc (the caller may be gone, its pid reused)
  return { uid: creds.uid, pid: creds.pid, gid, groups: creds.gids };
}
