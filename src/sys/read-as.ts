/**
 * Reading a file as a caller would: mode bits and every ancestor folder's search bit are checked
 * for the caller's uid and groups (POSIX ACL entries are not consulted, so they grant nothing
 * extra). vnetd runs as root and uses this for bridge.conf, which is policy by its permissions.
 */
import { constants as C, closeSync, fstatSync, openSync, readSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';

export const MAX_ACL_FILE_BYTES = 1024 * 1024;

/** Identity used for file permissions: uid and every group (primary and supplementary). */
export interface Cred {
  uid: number;
  gids: number[];
}

/** The parts of a stat the permission check needs. */
export interface ModeStat {
  mode: number;
  uid: number;
  gid: number;
}

function permits(st: ModeStat, cred: Cred, bit: number): boolean {
  if (st.uid === cred.uid) return ((st.mode >> 6) & bit) !== 0;
  if (cred.gids.includes(st.gid)) return ((st.mode >> 3) & bit) !== 0;
  return (st.mode & bit) !== 0;
}

/** May `cred` read a file with this stat? Mode bits only (first matching class decides); root reads all. */
export function canRead(st: ModeStat, cred: Cred): boolean {
  return cred.uid === 0 || permits(st, cred, 4);
}

/** May `cred` pass through (search) a folder with this stat? Root searches all. */
export function canSearch(st: ModeStat, cred: Cred): boolean {
  return cred.uid === 0 || permits(st, cred, 1);
}

function errText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err?.code ? `${err.code}` : String(e);
}

/** Every folder on the way to `file` must be searchable by cred; returns the first that is not. */
function unsearchable(file: string, cred: Cred): string | undefined {
  const parts = path.dirname(file).split('/').filter(Boolean);
  let dir = '/';
  for (let i = 0; i <= parts.length; i++) {
    const st = statSync(dir);
    if (!st.isDirectory()) return `${dir} is not a folder`;
    if (!canSearch(st, cred)) return `folder ${dir} is not searchable by uid ${cred.uid}`;
    if (i < parts.length) dir = path.join(dir, parts[i]!);
  }
  return undefined;
}

/**
 * Read an ACL file as the caller would: the file must be a regular file the caller may read, reached
 * through folders the caller may search (both the path as written and its target after symlinks).
 */
export function loadAsCaller(file: string, cred: Cred): string | { error: string } {
  if (!path.isAbsolute(file)) return { error: `${file} is not an absolute path` };
  let fd: number | undefined;
  try {
    // libc's realpath: one C call instead of Node's lstat of each component in JS
    const real = realpathSync.native(file);
    // root searches every folder, and a path that resolved has only folders on the way
    if (cred.uid !== 0) {
      const blocked = unsearchable(file, cred) ?? (real === file ? undefined : unsearchable(real, cred));
      if (blocked) return { error: `cannot read ${file}: ${blocked}` };
    }
    fd = openSync(real, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
    const st = fstatSync(fd);
    if (!st.isFile()) return { error: `${file} is not a regular file` };
    if (!canRead(st, cred))
      return { error: `${file} is not readable by uid ${cred.uid} (mode ${(st.mode & 0o7777).toString(8)}, owner ${st.uid}:${st.gid})` };
    if (st.size > MAX_ACL_FILE_BYTES) return { error: `${file} is larger than ${MAX_ACL_FILE_BYTES} bytes` };
    const buf = Buffer.alloc(Math.min(st.size + 1, MAX_ACL_FILE_BYTES + 1));
    let len = 0;
    for (let n = 1; n > 0 && len < buf.length; len += n) n = readSync(fd, buf, len, buf.length - len, null);
    if (len > MAX_ACL_FILE_BYTES) return { error: `${file} is larger than ${MAX_ACL_FILE_BYTES} bytes` };
    return buf.subarray(0, len).toString('utf8');
  } catch (e) {
    return { error: `cannot read ${file}: ${errText(e)}` };
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

