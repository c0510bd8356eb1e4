/**
 * Names that reach the kernel, nft or dnsmasq. Stricter than the kernel on purpose:
 * one rule set for every place a name travels.
 */

/** IFNAMSIZ is 16 including the NUL: at most 15 bytes. */
export const IFNAMSIZ = 16;

const IFNAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/** Returns why `name` is not a usable interface name, or undefined when it is. */
export function ifnameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return `must be a string, got ${typeof name}`;
  if (name.length === 0) return 'must not be empty';
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes >= IFNAMSIZ) return `must be at most ${IFNAMSIZ - 1} bytes, got ${bytes}`;
  if (name === '.' || name === '..') return 'must not be "." or ".."';
  if (!IFNAME_RE.test(name))
    return 'may hold only ASCII letters, digits, "_", "." and "-", and must not start with "-" or "."';
  return undefined;
}

/** Network names are file names (NAME.toml) and D-Bus path elements. */
const NETNAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$/;

export function networkNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return `must be a string, got ${typeof name}`;
  if (!NETNAME_RE.test(name))
    return 'must be 1-64 ASCII letters, digits, "_" or "-", not starting with "-"';
  return undefined;
}

const ACCOUNT_RE = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$/;

export function accountNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return `must be a string, got ${typeof name}`;
  if (!ACCOUNT_RE.test(name)) return 'is not a valid user or group name';
  return undefined;
}

const DOMAIN_RE = /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export function domainProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return `must be a string, got ${typeof name}`;
  if (!DOMAIN_RE.test(name)) return 'is not a valid DNS domain (letters, digits, "-", dot-separated labels)';
  return undefined;
}
