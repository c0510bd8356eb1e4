/**
 * Definitions: TOML text → NetworkSpec. One table maps each key to its parser; an unknown key,
 * a bad value or a missing key is an error naming the file, the key and the value. Pure: no
 * file system here (see config/networks.ts).
 */
import { parse as parseToml } from 'smol-toml';
import { bridgeAddressProblem, broadcastOf, canonical, compare, contains, isAddress, parseIfAddress, subnetOf, type IfAddress } from '../net/ip.js';
import { accountNameProblem, domainProblem, ifnameProblem, networkNameProblem } from '../config/names.js';
import type { DhcpRange, Forward, NetworkSpec, Standby } from './spec.js';

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

export function show(value: unknown): string {
  const s = typeof value === 'bigint' ? String(value) : JSON.stringify(value);
  if (s === undefined) return String(value);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** What the key parsers fill in; defaults and cross-key checks come after. */
interface Draft {
  bridge?: string;
  address?: IfAddress;
  address6?: IfAddress[];
  range4?: DhcpRange;
  forward?: Forward;
  onDemand?: boolean;
  idleDown?: number;
  standby?: Standby;
  allowUsers?: string[];
  allowGroups?: string[];
  domain?: string;
  mtu?: number;
  leaseMax?: number;
}

/** A key's parser: returns the problem (string) or sets the field on the draft. */
type KeyParser = (value: unknown, draft: Draft) => string | undefined;

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

function bridgeAddress(text: unknown, family: 4 | 6, example: string): IfAddress | string {
  const kind = family === 4 ? 'an IPv4' : 'an IPv6';
  if (typeof text !== 'string') return `expected a string such as "${example}"`;
  const a = parseIfAddress(text);
  if (!a || a.family !== family) {
    // "10.1/24" is an address to inet_aton, but not the dotted quad every other tool expects
    if (family === 4 && /^[0-9]+(\.[0-9]+){0,2}\/[0-9]+$/.test(text)) return `expected four decimal parts, e.g. "${example}"`;
    return `expected ${kind} address with prefix length, e.g. "${example}"`;
  }
  return bridgeAddressProblem(a) ?? a;
}

const FORWARD_MODES: Record<string, Forward | string> = {
  nat: { mode: 'nat' },
  isolated: { mode: 'isolated' },
  route: 'forward mode "route" is not supported yet; use "nat" or "isolated"',
  open: 'forward mode "open" is not supported yet; use "nat" or "isolated"',
  bridge: 'forward mode "bridge" is not supported yet; use "nat" or "isolated"',
};

const KEYS: Record<string, KeyParser> = {
  bridge(v, d) {
    const p = ifnameProblem(v);
    if (p) return `bridge name ${p}`;
    if (v === 'all') return 'bridge name "all" means every bridge in bridge.conf; choose another name';
    d.bridge = v as string;
    return undefined;
  },
  address(v, d) {
    const r = bridgeAddress(v, 4, '192.168.122.1/24');
    if (typeof r === 'string') return r;
    d.address = r;
    return undefined;
  },
  address6(v, d) {
    const list = typeof v === 'string' ? [v] : v;
    if (!Array.isArray(list) || list.length === 0) return 'expected an IPv6 address with prefix length, e.g. "fd00:1::1/64", or an array of them';
    const out: IfAddress[] = [];
    for (const item of list) {
      const r = bridgeAddress(item, 6, 'fd00:1::1/64');
      if (typeof r === 'string') return Array.isArray(v) ? `element ${show(item)}: ${r}` : r;
      const clash = out.find((o) => contains(subnetOf(o), r.address) || contains(subnetOf(r), o.address));
      if (clash) return `${r.cidr} overlaps ${clash.cidr}`;
      out.push(r);
    }
    d.address6 = out;
    return undefined;
  },
  'dhcp-range'(v, d) {
    if (!Array.isArray(v) || v.length !== 2 || typeof v[0] !== 'string' || typeof v[1] !== 'string')
      return 'expected two addresses, e.g. ["192.168.122.2", "192.168.122.254"]';
    const [start, end] = v as [string, string];
    if (!isAddress(start, 4)) return `start ${show(start)} is not an IPv4 address`;
    if (!isAddress(end, 4)) return `end ${show(end)} is not an IPv4 address`;
    if (compare(start, end) > 0) return 'start must not be after end';
    d.range4 = { start: canonical(start)!, end: canonical(end)! };
    return undefined;
  },
  forward(v, d) {
    const f = typeof v === 'string' && Object.hasOwn(FORWARD_MODES, v) ? FORWARD_MODES[v] : undefined;
    if (f === undefined) return `expected one of ${Object.keys(FORWARD_MODES).map((m) => `"${m}"`).join(', ')}`;
    if (typeof f === 'string') return f;
    d.forward = f;
    return undefined;
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
    d.leaseMax = n;
    return undefined;
  },
};

export const DEFINITION_KEYS = Object.keys(KEYS);

/** Validate an already-parsed table (a TOML document) into a NetworkSpec. */
export function specFromTable(name: string, file: string, table: Record<string, unknown>): NetworkSpec {
  const np = networkNameProblem(name);
  if (np) throw new DefinitionError(file, undefined, undefined, `network name ${show(name)} (from the file name) ${np}`);
  const d: Draft = {};
  for (const [key, value] of Object.entries(table)) {
    const parser = Object.hasOwn(KEYS, key) ? KEYS[key] : undefined;
    if (!parser) throw new DefinitionError(file, key, undefined, `unknown key; known keys are ${DEFINITION_KEYS.join(', ')}`);
    const problem = parser(value, d);
    if (problem) throw new DefinitionError(file, key, value, problem);
  }
  for (const required of ['bridge', 'address'] as const) {
    if (!(required in table)) throw new DefinitionError(file, required, undefined, 'is required');
  }
  const v4 = d.address!;
  if (d.range4) {
    const { start, end } = d.range4;
    const shown = [start, end];
    const net = subnetOf(v4);
    if (!contains(net, start) || !contains(net, end))
      throw new DefinitionError(file, 'dhcp-range', shown, `must lie inside the network ${v4.cidr} of \`address\``);
    const bcast = broadcastOf(net);
    if (start === v4.network || end === bcast)
      throw new DefinitionError(file, 'dhcp-range', shown, `must not include the network (${v4.network}) or broadcast (${bcast}) address`);
  }
  const spec: NetworkSpec = {
    name,
    source: file,
    owner: { kind: 'admin' },
    bridge: { name: d.bridge!, managed: true },
    addresses: [v4, ...(d.address6 ?? [])],
    forward: d.forward ?? { mode: 'nat' },
    dhcp: { leaseMax: d.leaseMax ?? 253 },
    dns: {},
    access: {},
    lifecycle: { onDemand: d.onDemand ?? true, idleDown: d.idleDown ?? 60, standby: d.standby ?? 'none' },
  };
  if (d.mtu !== undefined) spec.bridge.mtu = d.mtu;
  if (d.range4) spec.dhcp.range4 = d.range4;
  if (d.domain) spec.dns.domain = d.domain;
  if (d.allowUsers) spec.access.allowUsers = d.allowUsers;
  if (d.allowGroups) spec.access.allowGroups = d.allowGroups;
  return spec;
}

/** Parse TOML text of `file` (network `name`) into a NetworkSpec, or throw DefinitionError. */
export function parseDefinition(name: string, file: string, text: string): NetworkSpec {
  if (text.includes('\0')) throw new DefinitionError(file, undefined, undefined, 'file contains a NUL byte');
  let table: Record<string, unknown>;
  try {
    table = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    const msg = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new DefinitionError(file, undefined, undefined, `not valid TOML: ${msg}`, { cause: err });
  }
  return specFromTable(name, file, table);
}

/** The built-in `default` network, libvirt's virbr0 look-alike. */
export function builtinDefault(): NetworkSpec {
  return specFromTable('default', 'built-in', {
    bridge: 'virbr0',
    address: '192.168.122.1/24',
    'dhcp-range': ['192.168.122.2', '192.168.122.254'],
    forward: 'nat',
    'on-demand': true,
    'idle-down': 60,
  });
}

/** A short one-line summary for `vnet check`: "virbr0 192.168.122.1/24 fd00:1::1/64 (nat)". */
export function summary(spec: NetworkSpec): string {
  return `${spec.bridge.name} ${spec.addresses.map((a) => `${a.address}/${a.prefix}`).join(' ')}`;
}

