/**
 * The set of defined networks: every $VNET_CONFIG_DIR/networks/NAME.toml plus the
 * built-in `default` (unless default.toml overrides it). A file that fails to parse
 * is reported with its error and left out; the others stay usable.
 *
 * vnetd asks for the set on tap requests, so the parsed result is kept per folder and
 * used again while every .toml file has the same name, inode, size, mtime and ctime.
 * Files changed in the last second are not trusted to that test (timestamps are coarse:
 * two writes of the same size within one tick look alike), so they are read again.
 * The files are few and small: they are read synchronously, without thread-pool hops.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { NetworkDef } from '../model.js';
import { builtinDefault, cidrsOverlap, DefinitionError, parseDefinition } from './definition.js';

export interface DefinitionSet {
  networks: Map<string, NetworkDef>;
  /** per network name, why its file was refused */
  errors: Map<string, DefinitionError>;
}

/** Files changed this recently (ms) are read again even when their stat looks unchanged. */
const SETTLE_MS = 1000;

const cache = new Map<string, { key: string; set: DefinitionSet }>();

/** Copies, so a caller changing the maps cannot change what the next caller gets. */
function copyOf(set: DefinitionSet): DefinitionSet {
  return { networks: new Map(set.networks), errors: new Map(set.errors) };
}

/**
 * What the set was computed from: each .toml file's name, inode, size, mtime and ctime.
 * Undefined when it cannot be trusted (a file vanished, or changed less than SETTLE_MS ago).
 */
function fingerprint(networksDir: string, entries: string[]): string | undefined {
  const now = Date.now();
  const parts: string[] = [];
  for (const entry of entries) {
    const st = statSync(path.join(networksDir, entry), { bigint: true, throwIfNoEntry: false });
    if (!st) return undefined;
    const changedMs = Number((st.mtimeNs > st.ctimeNs ? st.mtimeNs : st.ctimeNs) / 1_000_000n);
    if (now - changedMs < SETTLE_MS) return undefined;
    parts.push(`${entry}\0${st.ino}\0${st.size}\0${st.mtimeNs}\0${st.ctimeNs}`);
  }
  return parts.join('\n');
}

export async function loadDefinitions(networksDir: string): Promise<DefinitionSet> {
  let entries: string[] = [];
  try {
    entries = readdirSync(networksDir).filter((f) => f.endsWith('.toml')).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const key = fingerprint(networksDir, entries);
  const hit = cache.get(networksDir);
  if (key !== undefined && hit?.key === key) return copyOf(hit.set);
  const set = readDefinitions(networksDir, entries);
  if (key !== undefined) cache.set(networksDir, { key, set });
  else cache.delete(networksDir);
  return copyOf(set);
}

function readDefinitions(networksDir: string, entries: string[]): DefinitionSet {
  const networks = new Map<string, NetworkDef>();
  const errors = new Map<string, DefinitionError>();
  const parsed: NetworkDef[] = [];
  for (const entry of entries) {
    const name = entry.slice(0, -'.toml'.length);
    const file = path.join(networksDir, entry);
    try {
      const text = readFileSync(file, 'utf8');
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
