/**
 * How user networks are named. A user's network is `NAME` to its owner and `OWNER:NAME` to
 * everyone else (root, status, logs, the runtime): admin network names cannot hold ":", so the
 * two kinds never share a name. Its bridge gets a generated name no admin picks by accident.
 */
import { createHash } from 'node:crypto';
import { accountNameProblem, IFNAMSIZ } from '../config/names.js';

/** A user network's own name: at most 31 bytes, so OWNER:NAME stays within 64 (a lease file's name). */
const USER_NET_RE = /^[A-Za-z0-9_][A-Za-z0-9_-]{0,30}$/;

export function userNetworkNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return `must be a string, got ${typeof name}`;
  if (!USER_NET_RE.test(name)) return 'must be 1-31 ASCII letters, digits, "_" or "-", not starting with "-"';
  return undefined;
}

/** An owner's name must be a plain account name (no "$", no ":") to stand in OWNER:NAME. */
export function ownerNameProblem(user: string): string | undefined {
  return accountNameProblem(user) ?? (user.endsWith('$') ? 'ends with "$"' : undefined);
}

export function qualifiedName(owner: string, name: string): string {
  return `${owner}:${name}`;
}

/** "alice:lab" → { owner: "alice", name: "lab" }; undefined for a name without ":" or a malformed one. */
export function splitQualified(text: string): { owner: string; name: string } | undefined {
  const at = text.indexOf(':');
  if (at < 0) return undefined;
  const owner = text.slice(0, at);
  const name = text.slice(at + 1);
  if (ownerNameProblem(owner) || userNetworkNameProblem(name)) return undefined;
  return { owner, name };
}

export function isQualified(text: string): boolean {
  return text.includes(':');
}

/**
 * How a network is named where every local user can look (file names, dnsmasq's command line,
 * the state file): an admin network by its name, a user network by a hash of OWNER:NAME, whose
 * existence is its owner's and root's to know.
 */
export function publicName(name: string): string {
  return isQualified(name) ? `u-${createHash('sha256').update(name).digest('hex').slice(0, 16)}` : name;
}

/** The prefix of every user network's bridge. */
export const USER_BRIDGE_PREFIX = 'vn-';

/**
 * The bridge of user `uid`'s network `name`, try number `attempt` (the next one when a name is
 * taken): "vn-" and 11 hex digits of a hash, 14 bytes, within IFNAMSIZ.
 */
export function userBridgeName(uid: number, name: string, attempt: number): string {
  const hex = createHash('sha256').update(`vnet user network\0${uid}\0${name}\0${attempt}`).digest('hex');
  const out = `${USER_BRIDGE_PREFIX}${hex.slice(0, 11)}`;
  if (Buffer.byteLength(out) >= IFNAMSIZ) throw new RangeError(`bridge name ${out} is too long`);
  return out;
}

/**
 * A unique local IPv6 /64 (RFC 4193) for user `uid`'s network `name`: fd00::/8, a 40-bit global ID
 * and a 16-bit subnet ID from a hash, so it is stable for the network and unlikely to meet another.
 * The bridge takes ::1.
 */
export function userUla(uid: number, name: string, attempt: number): string {
  const h = createHash('sha256').update(`vnet user network ula\0${uid}\0${name}\0${attempt}`).digest();
  const groups = [0xfd00 | h[0]!, (h[1]! << 8) | h[2]!, (h[3]! << 8) | h[4]!, (h[5]! << 8) | h[6]!].map((g) => g.toString(16));
  return `${groups.join(':')}::1/64`;
}
