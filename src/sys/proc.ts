/** Facts about processes from /proc: parents, and the ids a caller runs with. */
import { readFileSync } from 'node:fs';
import type { Cred } from './read-as.js';

/** Parent pid of `pid`, or undefined when the process is gone. */
export function parentPid(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may hold spaces and parentheses: the fields after it start at the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ppid = Number(rest[1]);
    return Number.isInteger(ppid) && ppid > 0 ? ppid : undefined;
  } catch {
    return undefined;
  }
}

/** /proc/PID/status fields vnet needs. Pure. */
export interface ProcIds {
  /** real, effective, saved, filesystem */
  uids: number[];
  gids: number[];
  /** supplementary groups */
  groups: number[];
}

export function parseProcStatus(text: string): ProcIds {
  const ids = (key: string): number[] => {
    const m = new RegExp(`^${key}:([^\\n]*)$`, 'm').exec(text);
    if (!m) return [];
    return (m[1] ?? '').split(/\s+/).filter(Boolean).map(Number).filter((n) => Number.isSafeInteger(n) && n >= 0);
  };
  return { uids: ids('Uid'), gids: ids('Gid'), groups: ids('Groups') };
}

export class CallerIdentityError extends Error {
  override name = 'CallerIdentityError';
}

/**
 * Supplementary groups of process `pid`, checked to still belong to `uid` (as SO_PEERCRED reported it),
 * so a pid reused by another user's process is refused.
 */
export function callerGroups(pid: number, uid: number): number[] {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch (e) {
    throw new CallerIdentityError(`cannot read /proc/${pid}/status: ${errText(e)}`, { cause: e });
  }
  const ids = parseProcStatus(text);
  if (!ids.uids.slice(0, 2).includes(uid))
    throw new CallerIdentityError(`process ${pid} is no longer uid ${uid} (uids ${ids.uids.join(' ')})`);
  return ids.groups;
}

/** The caller's file-permission identity: its uid, primary gid and supplementary groups. */
export function callerCred(peer: { pid: number; uid: number; gid: number }): Cred {
  return { uid: peer.uid, gids: [...new Set([peer.gid, ...callerGroups(peer.pid, peer.uid)])] };
}


function errText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err?.code ? `${err.code}` : String(e);
}
