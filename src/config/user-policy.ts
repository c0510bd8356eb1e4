/**
 * vnet.toml's `[user-networks]` table: the admin's limits on networks users create themselves
 * (who may, from which pool, which forward modes, how many each). No table: nobody may. Strict
 * like the rest of vnet.toml: an unknown key or a bad value names the key and the value.
 */
import { accountNameProblem } from './names.js';
import { cidrOf, parseSubnet, rangeOf, type Subnet } from '../net/ip.js';
import { int, stringList } from '../spec/keys/section.js';

/** The forward modes a user network may have: neither opens the host's LAN to guests' own routing. */
export const USER_FORWARD_MODES = ['nat', 'isolated'] as const;
export type UserForwardMode = (typeof USER_FORWARD_MODES)[number];

export interface UserNetworkPolicy {
  /** user names that may create networks */
  allowUsers: string[];
  /** groups whose members may */
  allowGroups: string[];
  /** where their subnets come from */
  pool: Subnet;
  /** every user network is a subnet of this length */
  prefixLength: number;
  forwardModes: UserForwardMode[];
  /** networks one user may have at once */
  maxPerUser: number;
}

/** A problem with one key of the table, named as `user-networks.KEY`. */
export interface PolicyProblem {
  key: string;
  value: unknown;
  problem: string;
}

/** Longest allow list the table may hold: vnetd resolves each name when someone asks to create. */
export const MAX_POLICY_NAMES = 256;
/** The most networks one user may be allowed: each is a bridge, rules and a dnsmasq. */
export const MAX_PER_USER_LIMIT = 64;

type Parser = (v: unknown, p: Partial<UserNetworkPolicy>) => string | undefined;

function names(v: unknown): string[] | string {
  const r = stringList(v, accountNameProblem);
  if (typeof r !== 'string' && r.length > MAX_POLICY_NAMES) return `at most ${MAX_POLICY_NAMES} names, got ${r.length}`;
  return r;
}

const KEYS: Record<string, Parser> = {
  'allow-users'(v, p) {
    const r = names(v);
    if (typeof r === 'string') return r;
    p.allowUsers = r;
    return undefined;
  },
  'allow-groups'(v, p) {
    const r = names(v);
    if (typeof r === 'string') return r;
    p.allowGroups = r;
    return undefined;
  },
  pool(v, p) {
    const net = typeof v === 'string' ? parseSubnet(v) : undefined;
    if (!net || net.family !== 4) return 'expected an IPv4 subnet without host bits, e.g. "10.231.0.0/16"';
    if (net.prefix < 8 || net.prefix > 30) return `prefix length must be 8..30, got /${net.prefix}`;
    const range = rangeOf(net.network);
    if (['unspecified', 'loopback', 'multicast', 'broadcast', 'linkLocal', 'reserved'].includes(range)) return `${cidrOf(net)} is a ${range} range, not usable for networks`;
    p.pool = net;
    return undefined;
  },
  'prefix-length'(v, p) {
    const r = int(v, 16, 30);
    if (typeof r === 'string') return r;
    p.prefixLength = r;
    return undefined;
  },
  'forward-modes'(v, p) {
    if (!Array.isArray(v)) return `expected an array of forward modes, e.g. ["nat", "isolated"]`;
    const out: UserForwardMode[] = [];
    for (const m of v) {
      if (!(USER_FORWARD_MODES as readonly unknown[]).includes(m)) return `element ${JSON.stringify(m)}: user networks may be ${USER_FORWARD_MODES.map((x) => `"${x}"`).join(' or ')}`;
      if (!out.includes(m as UserForwardMode)) out.push(m as UserForwardMode);
    }
    if (out.length === 0) return 'must name at least one forward mode';
    p.forwardModes = out;
    return undefined;
  },
  'max-per-user'(v, p) {
    const r = int(v, 0, MAX_PER_USER_LIMIT);
    if (typeof r === 'string') return r;
    p.maxPerUser = r;
    return undefined;
  },
};

export const USER_POLICY_KEYS = Object.keys(KEYS);

/** The `[user-networks]` table as a policy, or the first problem, naming its key. */
export function parseUserPolicy(table: unknown): UserNetworkPolicy | PolicyProblem {
  if (typeof table !== 'object' || table === null || Array.isArray(table) || table instanceof Date)
    return { key: 'user-networks', value: table, problem: 'expected a table ([user-networks])' };
  const p: Partial<UserNetworkPolicy> = {};
  for (const [key, value] of Object.entries(table as Record<string, unknown>)) {
    const parser = Object.hasOwn(KEYS, key) ? KEYS[key] : undefined;
    if (!parser) return { key: `user-networks.${key}`, value: undefined, problem: `unknown key; known keys are ${USER_POLICY_KEYS.join(', ')}` };
    const problem = parser(value, p);
    if (problem) return { key: `user-networks.${key}`, value, problem };
  }
  if (!p.pool) return { key: 'user-networks.pool', value: undefined, problem: 'is required (the IPv4 subnet user networks come from, e.g. "10.231.0.0/16")' };
  const prefixLength = p.prefixLength ?? 24;
  if (prefixLength < p.pool.prefix)
    return { key: 'user-networks.prefix-length', value: prefixLength, problem: `a /${prefixLength} does not fit in the pool ${cidrOf(p.pool)}` };
  return {
    allowUsers: p.allowUsers ?? [],
    allowGroups: p.allowGroups ?? [],
    pool: p.pool,
    prefixLength,
    forwardModes: p.forwardModes ?? ['nat', 'isolated'],
    maxPerUser: p.maxPerUser ?? 4,
  };
}

export function isPolicyProblem(v: UserNetworkPolicy | PolicyProblem): v is PolicyProblem {
  return 'problem' in v;
}
