/**
 * $VNET_CONFIG_DIR/vnet.toml: settings of vnet as a whole (not of one network), read when vnetd
 * starts and by `vnet check`. Strict like a definition: an unknown key or a bad value is an error
 * naming the file, the key and the value. No file: every default. A setting is one entry in KEYS.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { cidrOf, parseSubnet, rangeOf, type Subnet } from '../net/ip.js';
import { bool } from '../spec/keys/section.js';
import { DefinitionError, tomlTable } from '../spec/parse.js';
import { isPolicyProblem, parseUserPolicy, type PolicyProblem, type UserNetworkPolicy } from './user-policy.js';

export interface VnetSettings {
  /** where address = "auto" picks its /24s from */
  autoPool: Subnet;
  /** keep vnet's accept rules in Docker's DOCKER-USER chain while networks are up */
  dockerCompat: boolean;
  /** [user-networks]: who may create networks of their own, and within what; absent: nobody may */
  userNetworks?: UserNetworkPolicy;
}

/**
 * The default pool of address = "auto": a /16 inside 10/8 that the usual tenants leave alone
 * (libvirt and home routers sit in 192.168/16, Docker in 172.17-31, OpenVPN at 10.8, k3s at 10.42-43,
 * Podman at 10.88-89, Kubernetes services at 10.96/12, flannel at 10.244), and vnet skips any of its
 * /24s the host already routes.
 */
export const DEFAULT_AUTO_POOL = '10.200.0.0/16';

export function defaultSettings(): VnetSettings {
  return { autoPool: parseSubnet(DEFAULT_AUTO_POOL)!, dockerCompat: false };
}

/** Returns the problem with `value` (a table's: naming its own key), or undefined after writing it into `settings`. */
type SettingParser = (value: unknown, settings: VnetSettings) => string | PolicyProblem | undefined;

const KEYS: Record<string, SettingParser> = {
  'auto-pool'(v, s) {
    const example = `e.g. "${DEFAULT_AUTO_POOL}"`;
    const net = typeof v === 'string' ? parseSubnet(v) : undefined;
    if (!net || net.family !== 4) return `expected an IPv4 subnet without host bits, ${example}`;
    if (net.prefix < 8 || net.prefix > 24) return `prefix length must be 8..24 (address = "auto" picks /24s from it), got /${net.prefix}`;
    const range = rangeOf(net.network);
    if (['unspecified', 'loopback', 'multicast', 'broadcast', 'linkLocal', 'reserved'].includes(range)) return `${cidrOf(net)} is a ${range} range, not usable for networks`;
    s.autoPool = net;
    return undefined;
  },
  'docker-compat'(v, s) {
    const b = bool(v);
    if (typeof b === 'string') return b;
    s.dockerCompat = b;
    return undefined;
  },
  'user-networks'(v, s) {
    const p = parseUserPolicy(v);
    if (isPolicyProblem(p)) return p;
    s.userNetworks = p;
    return undefined;
  },
};

export const SETTING_KEYS = Object.keys(KEYS);

/** Parse the text of `file`, or throw DefinitionError naming the file, key and value. */
export function parseSettings(file: string, text: string): VnetSettings {
  const table = tomlTable(file, text);
  const settings = defaultSettings();
  for (const [key, value] of Object.entries(table)) {
    const parser = Object.hasOwn(KEYS, key) ? KEYS[key] : undefined;
    if (!parser) throw new DefinitionError(file, key, undefined, `unknown key; known keys are ${SETTING_KEYS.join(', ')}`);
    const problem = parser(value, settings);
    if (typeof problem === 'string') throw new DefinitionError(file, key, value, problem);
    if (problem) throw new DefinitionError(file, problem.key, problem.value, problem.problem);
  }
  return settings;
}

export function vnetTomlPath(configDir: string): string {
  return path.join(configDir, 'vnet.toml');
}

/** The settings in `configDir`/vnet.toml; the defaults when there is no such file. */
export function loadSettings(configDir: string): VnetSettings {
  const file = vnetTomlPath(configDir);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return defaultSettings();
    throw new DefinitionError(file, undefined, undefined, `cannot be read: ${(err as Error).message}`, { cause: err });
  }
  return parseSettings(file, text);
}
