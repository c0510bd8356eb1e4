/**
 * Network definitions: TOML text → validated NetworkDef. One table maps each key to
 * its parser; an unknown key, a bad value or a missing key is an error naming the
 * file, the key and the value. Pure: no file system here (see config/networks.ts).
 */
import ipaddr from 'ipaddr.js';
import { parse as parseToml } from 'smol-toml';
import type { DhcpRange, Ipv4Interface, NetworkDef } from '../model.js';
import { accountNameProblem, domainProblem, ifnameProblem, networkNameProblem } from './names.js';

export class DefinitionError extends Error {
  override name = 'DefinitionError';
  constructor(
    readonly file: string,
    readonly key: string | undefined,
    readonly value: unknown,
    readonly problem: string,
    options?: { cause?: unknown },
  ) {
    super(
      key === undefined
        ? `${file}: ${problem}`
        : `${file}: key \`${key}\`${value === undefined ? '' : ` = ${show(value)}`}: ${problem}`,
      options,
    );
  }
}

function show(value: unknown): string {
  const s = JSON.stringify(value);
  if (s === undefined) return String(value);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

type Fields = Omit<NetworkDef, 'name' | 'source'>;
type Draft = Partial<Fields>;

/** A key's parser: returns the problem (string) or sets the field on the draft. */
type KeyParser = (value: unknown, draft: Draft) => string | undefined;

function str(value: unknown): value is string {
  return typeof value === 'string';
}

export function parseIpv4Interface(text: string): Ipv4Interface | string {
  if (!text.includes('/')) return 'expected an IPv4 address with prefix length, e.g. "192.168.122.1/24"';
  let addr: ipaddr.IPv4;
  let prefix: number;
  try {
    const [a, p] = ipaddr.IPv4.parseCIDR(text);
    addr = a;
    prefix = p;
  } catch {
    return 'expected an IPv4 address with prefix length, e.g. "192.168.122.1/24"';
  }
  if (!ipaddr.IPv4.isValidFourPartDecimal(text.split('/')[0] ?? ''))
    return 'expected four decimal parts, e.g. "192.168.122.1/24"';
  if (prefix < 8 || prefix > 30) return `prefix length must be 8..30 (a /31 or /32 leaves no room for guests), got /${prefix}`;
  const network = ipaddr.IPv4.networkAddressFromCIDR(text).toString();
  const broadcast = ipaddr.IPv4.broadcastAddressFromCIDR(text).toString();
  const address = addr.toString();
  if (address === network) return `${address} is the network address of /${prefix}; use a host address such as ${nextAddr(network)}`;
  if (address === broadcast) return `${address} is the broadcast address of /${prefix}`;
  const range = addr.range();
  if (['unspecified', 'loopback', 'multicast', 'broadcast', 'linkLocal'].includes(range) || addr.match(ipaddr.IPv4.parse('240.0.0.0'), 4))
    return `${address} is a ${range} address, not usable for a bridge`;
  return { address, prefix, network, cidr: `${network}/${prefix}` };
}

function nextAddr(ip: string): string {
  const b = ipaddr.IPv4.parse(ip).toByteArray();
  const n = ((b[0]! << 24) >>> 0) + (b[1]! << 16) + (b[2]! << 8) + b[3]! + 1;
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export function ipv4ToInt(ip: string): number {
  const b = ipaddr.IPv4.parse(ip).toByteArray();
  return ((b[0]! << 24) >>> 0) + (b[1]! << 16) + (b[2]! << 8) + b[3]!;
}

function isIpv4(text: string): boolean {
  return ipaddr.IPv4.isValidFourPartDecimal(text);
}

function stringList(value: unknown, check: (s: unknown) => string | undefined): string[] | string {
  if (!Array.isArray(value)) return 'expected an array of names, e.g. ["alice", "bob"]';
  const out: string[] = [];
  for (const item of value) {
    const p = check(item);
    if (p) return `element ${show(item)} ${p}`;
    out.push(item as string);
  }
  return out;
}

function int(value: unknown, min: number, max: number): number | string {
  if (typeof value !== 'number' && typeof value !== 'bigint') return `expected an integer ${min}..${max}`;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) return `expected an integer ${min}..${max}`;
  return n;
}

const KEYS: Record<string, KeyParser> = {
  bridge(v, d) {
    const p = ifnameProblem(v);
    if (p) return `bridge name ${p}`;
    if (v === 'all') return 'bridge name "all" means every bridge in bridge.conf; choose another name';
    d.bridge = v as string;
    return undefined;
  },
  address(v, d) {
    if (!str(v)) return 'expected a string such as "192.168.122.1/24"';
    const r = parseIpv4Interface(v);
    if (typeof r === 'string') return r;
    d.ipv4 = r;
    return undefined;
  },
  'dhcp-range'(v, d) {
    if (!Array.isArray(v) || v.length !== 2 || !str(v[0]) || !str(v[1]))
      return 'expected two addresses, e.g. ["192.168.122.2", "192.168.122.254"]';
    const [start, end] = v as [string, string];
    if (!isIpv4(start)) return `start ${show(start)} is not an IPv4 address`;
    if (!isIpv4(end)) return `end ${show(end)} is not an IPv4 address`;
    if (ipv4ToInt(start) > ipv4ToInt(end)) return 'start must not be after end';
    d.dhcpRange = { start, end } satisfies DhcpRange;
    return undefined;
  },
  forward(v, d) {
    if (v === 'nat') {
      d.forward = 'nat';
      return undefined;
    }
    if (v === 'route' || v === 'isolated' || v === 'open' || v === 'bridge')
      return `forward mode ${show(v)} is not supported yet; use "nat"`;
    return 'expected "nat"';
  },
  'on-demand'(v, d) {
    if (typeof v !== 'boolean') return 'expected true or false';
    d.onDemand = v;
    return undefined;
  },
  'idle-down'(v, d) {
    const n = int(v, 0, 86400);
    if (typeof n === 'string') return `${n} (seconds)`;
    d.idleDown = n;
    return undefined;
  },
  standby(v, d) {
    if (v !== 'none' && v !== 'stub') return 'expected "none" or "stub"';
    d.standby = v;
    return undefined;
  },
  'allow-users'(v, d) {
    const r = stringList(v, accountNameProblem);
    if (typeof r === 'string') return r;
    d.allowUsers = r;
    return undefined;
  },
  'allow-groups'(v, d) {
    const r = stringList(v, accountNameProblem);
    if (typeof r === 'string') return r;
    d.allowGroups = r;
    return undefined;
  },
  domain(v, d) {
    const p = domainProblem(v);
    if (p) return p;
    d.domain = v as string;
    return undefined;
  },
  mtu(v, d) {
    const n = int(v, 68, 65535);
    if (typeof n === 'string') return n;
    d.mtu = n;
    return undefined;
  },
  'dhcp-lease-max'(v, d) {
    const n = int(v, 1, 65535);
    if (typeof n === 'string') return n;
    d.dhcpLeaseMax = n;
    return undefined;
  },
};

export const DEFINITION_KEYS = Object.keys(KEYS);

const DEFAULTS = { forward: 'nat', onDemand: true, idleDown: 60, standby: 'none', dhcpLeaseMax: 253 } as const;

/** Validate an already-parsed table (TOML document) into a NetworkDef. */
export function definitionFromTable(name: string, file: string, table: Record<string, unknown>): NetworkDef {
  const np = networkNameProblem(name);
  if (np) throw new DefinitionError(file, undefined, undefined, `network name ${show(name)} (from the file name) ${np}`);
  const draft: Draft = {};
  for (const [key, value] of Object.entries(table)) {
    const parser = Object.hasOwn(KEYS, key) ? KEYS[key] : undefined;
    if (!parser)
      throw new DefinitionError(file, key, undefined, `unknown key; known keys are ${DEFINITION_KEYS.join(', ')}`);
    const problem = parser(value, draft);
    if (problem) throw new DefinitionError(file, key, value, problem);
  }
  for (const required of ['bridge', 'address'] as const) {
    if (!(required in table)) throw new DefinitionError(file, required, undefined, 'is required');
  }
  const ipv4 = draft.ipv4!;
  if (draft.dhcpRange) {
    const { start, end } = draft.dhcpRange;
    const inside = (ip: string) => ipaddr.IPv4.parse(ip).match(ipaddr.IPv4.parse(ipv4.network), ipv4.prefix);
    const rangeShown = [start, end];
    if (!inside(start) || !inside(end))
      throw new DefinitionError(file, 'dhcp-range', rangeShown, `must lie inside the network ${ipv4.cidr} of \`address\``);
    const bcast = ipaddr.IPv4.broadcastAddressFromCIDR(ipv4.cidr).toString();
    if (start === ipv4.network || end === bcast)
      throw new DefinitionError(file, 'dhcp-range', rangeShown, `must not include the network (${ipv4.network}) or broadcast (${bcast}) address`);
  }
  const def: NetworkDef = {
    name,
    source: file,
    bridge: draft.bridge!,
    ipv4,
    forward: draft.forward ?? DEFAULTS.forward,
    onDemand: draft.onDemand ?? DEFAULTS.onDemand,
    idleDown: draft.idleDown ?? DEFAULTS.idleDown,
    standby: draft.standby ?? DEFAULTS.standby,
    dhcpLeaseMax: draft.dhcpLeaseMax ?? DEFAULTS.dhcpLeaseMax,
  };
  if (draft.dhcpRange) def.dhcpRange = draft.dhcpRange;
  if (draft.allowUsers) def.allowUsers = draft.allowUsers;
  if (draft.allowGroups) def.allowGroups = draft.allowGroups;
  if (draft.domain) def.domain = draft.domain;
  if (draft.mtu !== undefined) def.mtu = draft.mtu;
  return def;
}

/** Parse TOML text of `file` (network `name`) into a NetworkDef, or throw DefinitionError. */
export function parseDefinition(name: string, file: string, text: string): NetworkDef {
  if (text.includes('\0')) throw new DefinitionError(file, undefined, undefined, 'file contains a NUL byte');
  let table: Record<string, unknown>;
  try {
    table = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    const msg = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new DefinitionError(file, undefined, undefined, `not valid TOML: ${msg}`, { cause: err });
  }
  return definitionFromTable(name, file, table);
}

/** The built-in `default` network, libvirt's virbr0 look-alike. */
export function builtinDefault(): NetworkDef {
  return definitionFromTable('default', 'built-in', {
    bridge: 'virbr0',
    address: '192.168.122.1/24',
    'dhcp-range': ['192.168.122.2', '192.168.122.254'],
    forward: 'nat',
    'on-demand': true,
    'idle-down': 60,
  });
}

/** Do two IPv4 CIDRs overlap? */
export function cidrsOverlap(a: string, b: string): boolean {
  const [na, pa] = ipaddr.IPv4.parseCIDR(a);
  const [nb, pb] = ipaddr.IPv4.parseCIDR(b);
  const p = Math.min(pa, pb);
  return na.match(nb, p);
}
