/**
 * The set of defined networks: every $VNET_CONFIG_DIR/networks/NAME.toml plus the
 * built-in `default` (unless default.toml overrides it). A file that fails to parse
 * is reported with its error and left out; the others stay usable.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { NetworkDef } from '../model.js';
import { builtinDefault, cidrsOverlap, DefinitionError, parseDefinition } from './definition.js';

export interface DefinitionSet {
  networks: Map<string, NetworkDef>;
  /** per network name, why its file was refused */
  errors: Map<string, DefinitionError>;
}

export async function loadDefinitions(networksDir: string): Promise<DefinitionSet> {
  const networks = new Map<string, NetworkDef>();
  const errors = new Map<string, DefinitionError>();
  let entries: string[] = [];
  try {
    entries = (await readdir(networksDir)).filter((f) => f.endsWith('.toml')).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const parsed: NetworkDef[] = [];
  for (const entry of entries) {
    const name = entry.slice(0, -'.toml'.length);
    const file = path.join(networksDir, entry);
    try {
      const text = await readFile(file, 'utf8');
      parsed.push(parseDefinition(name, file, text));
    } catch (err) {
      errors.set(
        name,
        err instanceof DefinitionError ? err : new DefinitionError(file, undefined, undefined, String((err as Error).message), { cause: err }),
      );
    }
  }
  if (!entries.includes('default.toml')) parsed.unshift(builtinDefault());
  for (const def of parsed) {
    const clash = [...networks.values()].find((o) => o.bridge === def.bridge || cidrsOverlap(o.ipv4.cidr, def.ipv4.cidr));
    if (clash) {
      const sameBridge = clash.bridge === def.bridge;
      errors.set(
        def.name,
        new DefinitionError(
          def.source,
          sameBridge ? 'bridge' : 'address',
          sameBridge ? def.bridge : def.ipv4.cidr,
          sameBridge
            ? `bridge is already used by network "${clash.name}" (${clash.source})`
            : `subnet overlaps ${clash.ipv4.cidr} of network "${clash.name}" (${clash.source})`,
        ),
      );
      continue;
    }
    networks.set(def.name, def);
  }
  return { networks, errors };
}
