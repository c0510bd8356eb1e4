/**
 * A network as a caller names it (src/usernet/resolve.ts: an admin network's name or bridge, the
 * caller's own network, OWNER:NAME, a user network's bridge). Its running copy when it runs
 * (requests use that until a reload), else its definition. A user network the caller may not see
 * is answered exactly as one that does not exist.
 */
import { VnetError } from '../api/errors.js';
import type { DefinitionSet } from '../config/networks.js';
import type { NetworkSpec } from '../spec/spec.js';
import { isQualified } from '../usernet/names.js';
import { resolveName, shortName, visibleTo } from '../usernet/resolve.js';

export interface Known {
  /** the definitions as loaded now (user networks among them) */
  loaded: DefinitionSet;
  /** the running copies */
  running: readonly NetworkSpec[];
  /** every user network, those that do not load included */
  userSpecs: readonly NetworkSpec[];
  /** where the admin's definitions live, for the error */
  networksDir: string;
}

export function findNetwork(name: string, uid: number, k: Known): NetworkSpec {
  const { networks, errors } = k.loaded;
  const specs = new Map(networks);
  for (const spec of k.running) specs.set(spec.name, spec);
  const found = resolveName(name, uid, specs);
  if (found) return found;
  // a definition that does not load: named by its file, or (a user network's) as its owner says it
  const own = k.userSpecs.find((s) => visibleTo(s, uid) && (s.name === name || (s.owner.kind === 'user' && s.owner.uid === uid && shortName(s) === name)));
  const err = own ? errors.get(own.name) : isQualified(name) ? undefined : errors.get(name);
  if (err) throw new VnetError('EINVAL', err.message, { cause: err });
  const known = [...networks.values()].filter((s) => visibleTo(s, uid)).map((s) => `${s.name} (${s.bridge.name})`).join(', ') || 'none';
  throw new VnetError('ENOENT', `no network or bridge named "${name}" (defined: ${known}; definitions live in ${k.networksDir})`);
}
