/**
 * Definitions: TOML text → NetworkSpec. The keys come from the sections in spec/keys/, one table
 * of key parsers in all; an unknown key, a bad value or a missing key is an error naming the
 * file, the key and the value. Pure: no file system here (see config/networks.ts).
 */
import { parse as parseToml } from 'smol-toml';
import { VnetError } from '../api/errors.js';
import { networkNameProblem } from '../config/names.js';
import { access } from './keys/access.js';
import { addresses } from './keys/addresses.js';
import { dhcp } from './keys/dhcp.js';
import { dns } from './keys/dns.js';
import { dnsRecords } from './keys/dns-records.js';
import { forward } from './keys/forward.js';
import { forwards } from './keys/forwards.js';
import { hosts } from './keys/hosts.js';
import { ipv6 } from './keys/ipv6.js';
import { lifecycle } from './keys/lifecycle.js';
import { link, mtu } from './keys/link.js';
import { show, type KeyParser, type Section } from './keys/section.js';
import { primary4, type NetworkSpec } from './spec.js';

export { show };

/** A definition vnet refuses: the file, the key and its value, and what is wrong (code EINVAL). */
export class DefinitionError extends VnetError {
  override name = 'DefinitionError';
  constructor(
    readonly file: string,
    readonly key: string | undefined,
    readonly value: unknown,
    readonly problem: string,
    options?: { cause?: unknown },
  ) {
    super(
      'EINVAL',
      key === undefined
        ? `${file}: ${problem}`
        : `${file}: key \`${key}\`${value === undefined ? '' : ` = ${show(value)}`}: ${problem}`,
      options,
    );
  }
}

/** The sections of a definition, in the order their keys are listed. A feature with keys adds one here. */
const SECTIONS: readonly Section[] = [link, addresses, dhcp, forward, ipv6, lifecycle, access, dns, mtu, forwards, hosts, dnsRecords];

const KEYS: Record<string, KeyParser> = Object.assign({}, ...SECTIONS.map((s) => s.keys));

export const DEFINITION_KEYS = Object.keys(KEYS);

function blank(name: string, file: string): NetworkSpec {
  return {
    name,
    source: file,
    owner: { kind: 'admin' },
    bridge: { name: '', managed: true },
    addresses: [],
    forward: { mode: 'nat' },
    dhcp: { leaseMax: 253 },
    dns: {},
    access: {},
    lifecycle: { onDemand: true, idleDown: 60, standby: 'none', autostart: false },
  };
}

/** Validate an already-parsed table (a TOML document) into a NetworkSpec. */
export function specFromTable(name: string, file: string, table: Record<string, unknown>): NetworkSpec {
  const np = networkNameProblem(name);
  if (np) throw new DefinitionError(file, undefined, undefined, `network name ${show(name)} (from the file name) ${np}`);
  const spec = blank(name, file);
  for (const [key, value] of Object.entries(table)) {
    const parser = Object.hasOwn(KEYS, key) ? KEYS[key] : undefined;
    if (!parser) throw new DefinitionError(file, key, undefined, `unknown key; known keys are ${DEFINITION_KEYS.join(', ')}`);
    const problem = parser(value, spec);
    if (problem) throw new DefinitionError(file, key, value, problem);
  }
  const has = (key: string) => Object.hasOwn(table, key);
  for (const section of SECTIONS) for (const key of section.required ?? []) if (!has(key)) throw new DefinitionError(file, key, undefined, 'is required');
  const fail = (key: string, value: unknown, problem: string): never => {
    throw new DefinitionError(file, key, value, problem);
  };
  for (const section of SECTIONS) section.check?.(spec, fail, has);
  return spec;
}

/** Parse TOML text of `file` (network `name`) into a NetworkSpec, or throw DefinitionError. */
export function parseDefinition(name: string, file: string, text: string): NetworkSpec {
  return specFromTable(name, file, tomlTable(file, text));
}

/** The top-level table of the TOML text of `file`, or DefinitionError naming the file. */
export function tomlTable(file: string, text: string): Record<string, unknown> {
  if (text.includes('\0')) throw new DefinitionError(file, undefined, undefined, 'file contains a NUL byte');
  try {
    return parseToml(text) as Record<string, unknown>;
  } catch (err) {
    const msg = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new DefinitionError(file, undefined, undefined, `not valid TOML: ${msg}`, { cause: err });
  }
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

/** A short one-line summary for `vnet check`: "virbr0 192.168.122.1/24 fd00:1::1/64", "vnbr1 auto (10.200.0.1/24) (route)". */
export function summary(spec: NetworkSpec): string {
  const cidr = (a: { address: string; prefix: number }) => `${a.address}/${a.prefix}`;
  const v4 = primary4(spec);
  const parts = spec.addresses.filter((a) => a !== v4).map(cidr);
  if (spec.auto) parts.unshift(`auto (${v4 ? cidr(v4) : 'no subnet picked yet'})`);
  else if (v4) parts.unshift(cidr(v4));
  const mode = spec.forward.mode === 'nat' ? '' : ` (${spec.forward.mode})`;
  return [spec.bridge.name, ...parts].join(' ') + mode;
}
