/**
 * What every check may know about vnet itself: the networks doctor looks at (every definition, or
 * the one NET names: checks of the host as a whole run all the same), what vnetd says about them (or why it could not be asked), vnet.toml's
 * settings and vnet's folders. Gathered once by doctor.ts.
 */
import type { Paths } from '../config/paths.js';
import type { VnetSettings } from '../config/vnet-toml.js';
import type { NetworkStatus } from '../daemon/service.js';
import type { NetworkSpec } from '../spec/spec.js';

export interface Scope {
  networks: NetworkSpec[];
  /** vnetd's status of each of `networks` (by name), or why vnetd did not answer */
  status: Map<string, NetworkStatus> | { unreachable: string };
  settings: VnetSettings;
  paths: Paths;
}

/** The networks vnetd says are up (or starting); [] when vnetd did not answer. */
export function upNetworks(scope: Scope): NetworkSpec[] {
  const st = scope.status;
  if (!(st instanceof Map)) return [];
  return scope.networks.filter((n) => ['up', 'starting'].includes(st.get(n.name)?.state ?? 'down'));
}

/** "default (virbr0)" */
export function named(n: Pick<NetworkSpec, 'name' | 'bridge'>): string {
  return `${n.name} (${n.bridge.name})`;
}

export function list(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}
