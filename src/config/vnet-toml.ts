/**
 * $VNET_CONFIG_DIR/vnet.toml: settings of vnet as a whole (not of one network), read when vnetd
 * starts. Strict like a definition: an unknown key or a bad value is an error naming the file,
 * the key and the value. No file: every default. A setting is one entry in KEYS.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { bool } from '../spec/keys/section.js';
import { DefinitionError } from '../spec/parse.js';

export interface VnetSettings {
  /** keep vnet's accept rules in Docker's DOCKER-USER chain while networks are up */
  dockerCompat: boolean;
}

export function defaultSettings(): VnetSettings {
  return { dockerCompat: false };
}

/** Returns the problem with `value`, or undefined after writing it into `settings`. */
type SettingParser = (value: unknown, settings: VnetSettings) => string | undefined;

const KEYS: Record<string, SettingParser> = {
  'docker-compat'(v, s) {
    const b = bool(v);
    if (typeof b === 'string') return b;
    s.dockerCompat = b;
    return undefined;
  },
};

export const SETTING_KEYS = Object.keys(KEYS);

/** Parse the text of `file`, or throw DefinitionError naming the file, key and value. */
export function parseVnetToml(file: string, text: string): VnetSettings {
  if (text.includes('\0')) throw new DefinitionError(file, undefined, undefined, 'file contains a NUL byte');
  let table: Record<string, unknown>;
  try {
    table = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    const msg = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new DefinitionError(file, undefined, undefined, `not valid TOML: ${msg}`, { cause: err });
  }
  const settings = defaultSettings();
  for (const [key, value] of Object.entries(table)) {
    const parser = Object.hasOwn(KEYS, key) ? KEYS[key] : undefined;
    if (!parser) throw new DefinitionError(file, key, undefined, `unknown key; known keys are ${SETTING_KEYS.join(', ')}`);
    const problem = parser(value, settings);
    if (problem) throw new DefinitionError(file, key, value, problem);
  }
  return settings;
}

export function vnetTomlPath(configDir: string): string {
  return path.join(configDir, 'vnet.toml');
}

/** The settings in `configDir`/vnet.toml; the defaults when there is no such file. */
export function loadVnetToml(configDir: string): VnetSettings {
  const file = vnetTomlPath(configDir);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return defaultSettings();
    throw new DefinitionError(file, undefined, undefined, `cannot be read: ${(err as Error).message}`, { cause: err });
  }
  return parseVnetToml(file, text);
}
