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
import { overlaps, subnetOf } from '../net/ip.js';
import { builtinDefault, DefinitionError, parseDefinition } from '../spec/parse.js';
import type { NetworkSpec } from '../spec/spec.js';

export interface DefinitionSet {
  networks: Map<string, NetworkSpec>;
  /** per network name, why its file was refused */
  errors: Map<string, DefinitionError>;
}

/** Files changed this recently (ms) are read again even when their stat looks unchanged. */
const SETTLE_MS = 1000;

/** Copies, so a caller changing the maps cannot change what the next caller gets. */
function copyOf(set: DefinitionSet): DefinitionSet {
  return { networks: new Map(set.networks), errors: new Map(set.errors) };
}

/**
 * What the set was computed from: each .toml file's name, inode, size, mtime and ctime.
 * Undefined when it cannot be trusted (a file vanished, or changed less than SETTLE_MS ago).
 */
function fingerprint(networksDir: string, entries: string[], now: number): string | undefined {
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

function listEntries(networksDir: string): string[] {
  try {
    return readdirSync(networksDir).filter((f) => f.endsWith('.toml')).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return [];
  }
}

/** Every definition in `networksDir`, read now (no cache): what `vnet check` shows. */
export function readDefinitionSet(networksDir: string): DefinitionSet {
  return readDefinitions(networksDir, listEntries(networksDir));
}

/** The definitions of one folder, read again only when a file changed. */
export class Definitions {
  private cached?: { key: string; set: DefinitionSet };
  /** the extra networks last checked against the admin's, and what clashed */
  private extraChecked?: { key: string; extra: readonly NetworkSpec[]; clashes: Map<string, DefinitionError> };

  /**
   * `resolve`: applied to each copy handed out (vnetd fills in the subnets address = "auto"
   * picked, which change without any file changing).
   */
  constructor(
    readonly networksDir: string,
    private readonly now: () => number = Date.now,
    private readonly resolve: (set: DefinitionSet) => DefinitionSet = (set) => set,
    /** networks defined elsewhere (users' own, named OWNER:NAME), added to each set handed out */
    private readonly extra: () => readonly NetworkSpec[] = () => [],
  ) {}

  load(): DefinitionSet {
    const entries = listEntries(this.networksDir);
    const key = fingerprint(this.networksDir, entries, this.now());
    if (key !== undefined && this.cached?.key === key) return this.withExtra(this.resolve(copyOf(this.cached.set)));
    const set = readDefinitions(this.networksDir, entries);
    this.cached = key === undefined ? undefined : { key, set };
    return this.withExtra(this.resolve(copyOf(set)));
  }

  /**
   * The extra networks beside the admin's: one that clashes with an admin network yields to it (its
   * error says why). Checked again only when either side changed: the tap path loads the set.
   */
  private withExtra(set: DefinitionSet): DefinitionSet {
    const extra = this.extra();
    if (extra.length === 0) return set;
    const admin = [...set.networks.values()];
    const key = admin.map((s) => `${s.name}\0${s.bridge.name}\0${s.addresses.map((a) => `${a.address}/${a.prefix}`).join(',')}`).join('\n');
    let m = this.extraChecked;
    if (!m || m.key !== key || m.extra !== extra) {
      m = { key, extra, clashes: new Map() };
      for (const spec of extra) {
        const clash = clashOf(spec, admin);
        if (clash) m.clashes.set(spec.name, clash);
      }
      this.extraChecked = m;
    }
    for (const spec of extra) {
      const clash = m.clashes.get(spec.name);
      if (clash) set.errors.set(spec.name, clash);
      else set.networks.set(spec.name, spec);
    }
    return set;
  }
}

function readDefinitions(networksDir: string, entries: string[]): DefinitionSet {
  const networks = new Map<string, NetworkSpec>();
  const errors = new Map<string, DefinitionError>();
  const parsed: NetworkSpec[] = [];
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
    const clash = clashOf(def, [...networks.values()]);
    if (clash) {
      errors.set(def.name, clash);
      continue;
    }
    networks.set(def.name, def);
  }
  return { networks, errors };
}

/** Why `def` cannot stand beside `others`: the same bridge, or a subnet (v4 or v6) that overlaps. */
export function clashOf(def: NetworkSpec, others: NetworkSpec[]): DefinitionError | undefined {
  for (const o of others) {
    // a network is named by its name or its bridge's: neither may stand for another network
    if (o.bridge.name === def.name)
      return new DefinitionError(def.source, undefined, undefined, `network name "${def.name}" is the bridge of network "${o.name}" (${o.source}); a network can be named by either, so they must not clash`);
    if (o.name === def.bridge.name)
      return new DefinitionError(def.source, 'bridge', def.bridge.name, `is the name of network "${o.name}" (${o.source}); a network can be named by either, so they must not clash`);
    if (o.bridge.name === def.bridge.name)
      return new DefinitionError(def.source, 'bridge', def.bridge.name, `bridge is already used by network "${o.name}" (${o.source})`);
    for (const a of def.addresses) {
      const b = o.addresses.find((x) => overlaps(subnetOf(a), subnetOf(x)));
      if (b)
        return new DefinitionError(def.source, a.family === 4 ? 'address' : 'address6', a.cidr, `subnet overlaps ${b.cidr} of network "${o.name}" (${o.source})`);
    }
  }
  return undefined;
}
