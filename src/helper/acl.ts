/**
 * Who may have a tap on which bridge: qemu-bridge-helper's bridge.conf rules, evaluated as the
 * caller, plus a vnet network's own allow-users / allow-groups.
 *
 * bridge.conf, as qemu-bridge-helper reads it: `#` comments, `allow NAME|all`, `deny NAME|all`,
 * `include PATH`. Default deny; a matching deny beats any allow whatever the order; exact names;
 * includes recurse. vnet decides the cases QEMU leaves to chance, always towards deny:
 *  - a line longer than 4095 bytes (QEMU's fgets buffer would split it into several lines), a NUL
 *    byte anywhere, an unknown keyword, a keyword with no argument, an argument containing blanks
 *    (`allow br0 # note`), or a name of 16 bytes or more makes the file malformed; one malformed
 *    file anywhere in the include tree denies everything ("failed to parse acl file ...");
 *  - blanks are spaces and tabs between keyword and argument; spaces, tabs, CR, VT and FF are
 *    trimmed at both ends, so CRLF files read like LF files; keywords are lower case only;
 *  - `include` of a relative path is relative to the including file's folder (never the caller's cwd);
 *    an include that cannot be read (missing, or not readable by the caller) adds nothing, as in QEMU;
 *    a file already read is not read again (cycles end); an include chain deeper than 16 files or a
 *    tree of more than 256 files is malformed;
 *  - the top file missing or unreadable denies with "failed to parse default acl file".
 * The decision says `allowed` (granted) and `denied` (a deny matched or a file is malformed), so a vnet
 * network's own bridge can honour bridge.conf denies without needing a bridge.conf allow.
 * Files are read as the caller: mode bits and every ancestor folder's search bit are checked for the
 * caller's uid and groups (POSIX ACL entries are not consulted, so they grant nothing extra).
 */
import { constants as C, closeSync, fstatSync, openSync, readFileSync, readSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import type { NetworkDef } from '../model.js';

export const DEFAULT_ACL_FILE = '/etc/qemu/bridge.conf';
/** Names of IFNAMSIZ (16) bytes or more are refused. */
export const IFNAMSIZ = 16;
export const MAX_LINE_BYTES = 4095;
export const MAX_INCLUDE_DEPTH = 16;
export const MAX_ACL_FILES = 256;
export const MAX_ACL_FILE_BYTES = 1024 * 1024;

export type AclRule =
  | { kind: 'allow' | 'deny'; /** a bridge name, or "all" */ name: string; line: number }
  | { kind: 'include'; /** absolute, resolved against the including file's folder */ path: string; line: number };

export interface AclFile {
  file: string;
  rules: AclRule[];
  /** set when the file is malformed: "line N: what is wrong" (the rules are then not used) */
  problem?: string;
}

export interface AclDecision {
  /** bridge.conf grants the bridge: some allow matches and nothing denies */
  allowed: boolean;
  /**
   * bridge.conf actively refuses: a deny matches, or a file is malformed. False when the file is
   * merely missing, unreadable or silent, so a vnet network's own allow lists can still decide.
   */
  denied: boolean;
  reason: string;
}

/** What a loader returns: the file's text, or why it could not be read as the caller. */
export type AclLoader = (file: string) => string | { error: string };

/** Identity used for file permissions: uid and every group (primary and supplementary). */
export interface Cred {
  uid: number;
  gids: number[];
}

const TRIM = /^[ \t\r\v\f]+|[ \t\r\v\f]+$/g;
const LEADING = /^[ \t\r\v\f]+/;

function bytes(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/** Parse one bridge.conf text. Pure; never throws: a malformed file comes back with `problem`. */
export function parseAcl(text: string, file: string): AclFile {
  const rules: AclRule[] = [];
  const bad = (line: number, what: string): AclFile => ({ file, rules: [], problem: `line ${line}: ${what}` });
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] ?? '';
    const n = i + 1;
    if (bytes(raw) > MAX_LINE_BYTES) return bad(n, `longer than ${MAX_LINE_BYTES} bytes`);
    if (raw.includes('\0')) return bad(n, 'contains a NUL byte');
    // As qemu-bridge-helper: skip leading blanks, split at the first space (only when
    // there is none, at the first tab), then trim the argument. So `allow\tbr0 ` has
    // the verb `allow\tbr0` there, and is malformed here too.
    const line = raw.replace(LEADING, '');
    if (line === '' || line.startsWith('#')) continue;
    let gap = line.indexOf(' ');
    if (gap < 0) gap = line.indexOf('\t');
    if (gap < 0) return bad(n, `\`${line.replace(TRIM, '').slice(0, 64)}\` has no argument`);
    const verb = line.slice(0, gap);
    const arg = line.slice(gap + 1).replace(TRIM, '');
    if (verb !== 'allow' && verb !== 'deny' && verb !== 'include') return bad(n, `unknown keyword \`${verb.slice(0, 64)}\``);
    if (arg === '') return bad(n, `\`${verb}\` has no argument`);
    if (/[ \t\r\v\f]/.test(arg)) return bad(n, `\`${verb}\` takes one argument, got \`${arg.slice(0, 64)}\``);
    if (verb === 'include') {
      rules.push({ kind: 'include', path: path.resolve(path.dirname(file), arg), line: n });
    } else {
      if (bytes(arg) >= IFNAMSIZ) return bad(n, `name \`${arg.slice(0, 64)}\` is ${bytes(arg)} bytes; names must be under ${IFNAMSIZ}`);
      rules.push({ kind: verb, name: arg, line: n });
    }
  }
  return { file, rules };
}

/** Why a bridge name cannot be looked up at all, or undefined when it can. */
export function badBridgeName(bridge: string): string | undefined {
  if (bridge === '') return 'empty bridge name';
  if (bridge.includes('\0')) return 'bridge name contains a NUL byte';
  if (bytes(bridge) >= IFNAMSIZ) return `bridge name \`${bridge.slice(0, 64)}\` is ${bytes(bridge)} bytes; names must be under ${IFNAMSIZ}`;
  return undefined;
}

/**
 * Decide whether bridge.conf (root and its includes, read through `load`) lets the caller have a tap on
 * `bridge`. Pure given `load`. Denials start with "access denied by acl file" or "failed to parse".
 */
export function evaluateAcl(
  bridge: string,
  load: AclLoader,
  options: string | { root?: string; maxDepth?: number; maxFiles?: number } = {},
): AclDecision {
  const opts = typeof options === 'string' ? { root: options } : options;
  const root = opts.root ?? DEFAULT_ACL_FILE;
  const maxDepth = opts.maxDepth ?? MAX_INCLUDE_DEPTH;
  const maxFiles = opts.maxFiles ?? MAX_ACL_FILES;
  const nameProblem = badBridgeName(bridge);
  if (nameProblem) return { allowed: false, denied: true, reason: `access denied: ${nameProblem}` };

  const top = load(root);
  if (typeof top !== 'string') return { allowed: false, denied: false, reason: `failed to parse default acl file \`${root}': ${top.error}` };
  const seen = new Set<string>([root]);
  let allow: string | undefined;
  let deny: string | undefined;
  const stack: Array<{ text: string; file: string; depth: number }> = [{ text: top, file: root, depth: 1 }];
  while (stack.length > 0) {
    const { text, file, depth } = stack.pop()!;
    const parsed = parseAcl(text, file);
    if (parsed.problem !== undefined) {
      const which = file === root ? 'default acl file' : 'acl file';
      return { allowed: false, denied: true, reason: `failed to parse ${which} \`${file}': ${parsed.problem}` };
    }
    const includes: Array<{ text: string; file: string; depth: number }> = [];
    for (const rule of parsed.rules) {
      const where = `${file}:${rule.line}`;
      if (rule.kind === 'include') {
        if (seen.has(rule.path)) continue;
        if (depth + 1 > maxDepth)
          return { allowed: false, denied: true, reason: `failed to parse acl file \`${file}': line ${rule.line}: includes nest deeper than ${maxDepth} files` };
        if (seen.size + 1 > maxFiles)
          return { allowed: false, denied: true, reason: `failed to parse acl file \`${file}': line ${rule.line}: more than ${maxFiles} files included` };
        seen.add(rule.path);
        const got = load(rule.path);
        if (typeof got === 'string') includes.push({ text: got, file: rule.path, depth: depth + 1 });
      } else if (rule.name === 'all' || rule.name === bridge) {
        if (rule.kind === 'deny') deny ??= `${rule.kind} ${rule.name} (${where})`;
        else allow ??= `${rule.kind} ${rule.name} (${where})`;
      }
    }
    stack.push(...includes.reverse());
  }
  if (deny !== undefined) return { allowed: false, denied: true, reason: `access denied by acl file: ${deny}` };
  if (allow === undefined) return { allowed: false, denied: false, reason: `access denied by acl file: no rule allows \`${bridge}'` };
  return { allowed: true, denied: false, reason: `allowed by acl file: ${allow}` };
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

/** Name → id from /etc/passwd or /etc/group text (first entry wins, as getpwnam). Pure. */
function parseIdFile(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#') || line.startsWith('+') || line.startsWith('-')) continue;
    const f = line.split(':');
    const name = f[0] ?? '';
    const id = f[2] ?? '';
    if (name === '' || !/^\d+$/.test(id) || out.has(name)) continue;
    out.set(name, Number(id));
  }
  return out;
}

export function parsePasswd(text: string): Map<string, number> {
  return parseIdFile(text);
}

export function parseGroup(text: string): Map<string, number> {
  return parseIdFile(text);
}

export interface IdLookups {
  uidOf(user: string): number | undefined;
  gidOf(group: string): number | undefined;
}

/** Lookups from passwd/group files under `etcDir` (local files only, no NSS); a missing file knows no names. */
export function readIdLookups(etcDir = '/etc'): IdLookups {
  const read = (name: string): string => {
    try {
      return readFileSync(path.join(etcDir, name), 'utf8');
    } catch {
      return '';
    }
  };
  const users = parsePasswd(read('passwd'));
  const groups = parseGroup(read('group'));
  return { uidOf: (u) => users.get(u), gidOf: (g) => groups.get(g) };
}

/** The gid of a local group (from etcDir/group), or undefined. */
export function groupIdOf(group: string, etcDir = '/etc'): number | undefined {
  return readIdLookups(etcDir).gidOf(group);
}

/**
 * A network's own allow-users / allow-groups. Neither set: every local user. Root is always allowed.
 * Names that do not resolve grant nothing. `lookups` defaults to /etc/passwd and /etc/group, read
 * only when a name has to be resolved (not for a network open to all, nor for root).
 */
export function networkAllows(
  def: Pick<NetworkDef, 'allowUsers' | 'allowGroups'> & { name?: string },
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
