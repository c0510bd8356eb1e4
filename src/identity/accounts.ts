/**
 * User and group names to ids, for allow lists and the `vnet` group. Local files only for now
 * (/etc/passwd, /etc/group).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

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

