/**
 * vnet's own settings: $VNET_CONFIG_DIR/vnet.toml, optional. Strict, as the network definitions
 * are: one table of keys, each with its parser; an unknown key or a bad value is an error naming
 * the file, the key and the value. A missing file means every default.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { cidrOf, parseSubnet, rangeOf, type Subnet } from '../net/ip.js';
import { show } from '../spec/keys/section.js';

export interface VnetSettings {
  /** where address = "auto" picks its /24s from */
  autoPool: Subnet;
}

/**
 * The default pool of address = "auto": a /16 inside 10/8 that the usual tenants leave alone
 * (libvirt and home routers sit in 192.168/16, Docker in 172.17-31, OpenVPN at 10.8, k3s at 10.42-43,
 * Podman at 10.88-89, Kubernetes services at 10.96/12, flannel at 10.244), and vnet skips any of its
 * /24s the host already routes.
 */
export const DEFAULT_AUTO_POOL = '10.200.0.0/16';

export function defaultSettings(): VnetSettings {
  return { autoPool: parseSubnet(DEFAULT_AUTO_POOL)! };
}

export class SettingsError extends Error {
  override name = 'SettingsError';
  constructor(
    readonly file: string,
    readonly key: string | undefined,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

type SettingParser = (value: unknown, out: VnetSettings) => string | undefined;

/** Every key of vnet.toml, one entry a key. */
const KEYS: Record<string, SettingParser> = {
  'auto-pool'(v, out) {
    const example = `e.g. "${DEFAULT_AUTO_POOL}"`;
    const s = typeof v === 'string' ? parseSubnet(v) : undefined;
    if (!s || s.family !== 4) return `expected an IPv4 subnet without host bits, ${example}`;
    if (s.prefix < 8 || s.prefix > 24) return `prefix length must be 8..24 (address = "auto" picks /24s from it), got /${s.prefix}`;
    const range = rangeOf(s.network);
    if (['unspecified', 'loopback', 'multicast', 'broadcast', 'linkLocal', 'reserved'].includes(range)) return `${cidrOf(s)} is a ${range} range, not usable for networks`;
    out.autoPool = s;
    return undefined;
  },
};

export function parseSettings(file: string, text: string): VnetSettings {
  let table: Record<string, unknown>;
  try {
    table = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    throw new SettingsError(file, undefined, `${file}: not valid TOML: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  const out = defaultSettings();
  for (const [key, value] of Object.entries(table)) {
    const parser = Object.hasOwn(KEYS, key) ? KEYS[key] : undefined;
    if (!parser) throw new SettingsError(file, key, `${file}: key \`${key}\`: unknown key; known keys are ${Object.keys(KEYS).join(', ')}`);
    const problem = parser(value, out);
    if (problem) throw new SettingsError(file, key, `${file}: key \`${key}\` = ${show(value)}: ${problem}`);
  }
  return out;
}

/** $configDir/vnet.toml, or the defaults when there is none. */
export function loadSettings(configDir: string): VnetSettings {
  const file = path.join(configDir, 'vnet.toml');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return defaultSettings();
    throw new SettingsError(file, undefined, `${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err });
  }
  return parseSettings(file, text);
}
