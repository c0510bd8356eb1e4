/**
 * What `vnet check` says about a valid definition against the host as it is now, in the words
 * `vnet up` would refuse it with: a bridge name another interface has, a bridge (forward =
 * "bridge") that is missing or no bridge, a subnet overlapping a route or address of another
 * interface. Pure; the caller lists the host and reads vnet's journal (which bridges it made).
 */
import type { Link } from '../netlink/rtnl.js';
import type { NetworkSpec } from '../spec/spec.js';
import { describeConflict, subnetConflict, type HostAddressing } from './conflicts.js';

export function hostProblems(
  spec: NetworkSpec,
  host: Omit<HostAddressing, 'links'> & { links: ReadonlyArray<Pick<Link, 'index' | 'name' | 'kind'>> },
  owned: ReadonlyMap<string, number>,
): string[] {
  const out: string[] = [];
  const at = `${spec.source}: network "${spec.name}"`;
  const bridge = spec.bridge.name;
  const link = host.links.find((l) => l.name === bridge);
  if (spec.bridge.managed && link && owned.get(bridge) !== link.index) out.push(`${at}: interface ${bridge} already exists and was not created by vnet; choose another \`bridge\` (or stop what made it)`);
  if (!spec.bridge.managed && !link) out.push(`${at}: bridge ${bridge} does not exist; forward = "bridge" uses a bridge vnet does not create`);
  if (!spec.bridge.managed && link && link.kind !== 'bridge') out.push(`${at}: interface ${bridge} is not a bridge`);
  const c = subnetConflict(spec, host);
  if (c) out.push(`${at}: ${describeConflict(c)}; choose another \`${c.key}\``);
  return out;
}
