/**
 * Subnet conflicts and definitions: a network whose subnet overlaps a route or address of another
 * interface (a VPN, a docker bridge, libvirt's own virbr0), or whose bridge name another interface
 * has, is refused by `vnet up` (../reconcile/host-check.ts says it in the words `vnet check` uses);
 * an up network that got such a neighbour is reported by vnetd (status `conflict`). A definition
 * that does not parse is named too.
 */
import path from 'node:path';
import type { Link, LinkAddress, Route } from '../netlink/rtnl.js';
import { hostProblems } from '../reconcile/host-check.js';
import { StateFile } from '../runtime/state-file.js';
import { describeConflict } from '../reconcile/conflicts.js';
import { couldNotRead, failure, isUnreadable, reasonOf, passed, type Finding, type Unreadable } from './finding.js';
import type { Scope } from './scope.js';

export interface SubnetFacts {
  host: { links: Array<Pick<Link, 'index' | 'name' | 'kind'>>; routes: Route[]; addresses: LinkAddress[] } | Unreadable;
  /** bridges vnet made (its journal), by name → ifindex */
  owned: Map<string, number>;
  /** definitions that do not parse: their messages */
  definitionErrors: string[];
}

const CHECK = 'subnets';

export function judgeSubnets(f: SubnetFacts, scope: Scope): Finding[] {
  const out: Finding[] = f.definitionErrors.map((e) => failure('definitions', e, 'vnet check   # names file, key and value; fix the file, then: sudo vnet reload'));
  if (isUnreadable(f.host)) return [...out, couldNotRead(CHECK, "the host's links, routes and addresses", f.host.unreadable)];
  const host = f.host;
  const st = scope.status;
  for (const spec of scope.networks) {
    const s = st instanceof Map ? st.get(spec.name) : undefined;
    if (s?.conflict) {
      out.push(failure(CHECK, `network ${spec.name} is up and ${describeConflict(s.conflict)}: guests' traffic to that subnet goes the wrong way`, `stop what added it, or give ${spec.name} another \`address\` (sudoedit ${spec.source}, then sudo vnet down ${spec.name} && sudo vnet up ${spec.name})`));
      continue;
    }
    // a bridge vnetd says is up is vnet's, whatever the journal this user could read says
    const owned = new Map(f.owned);
    const link = host.links.find((l) => l.name === spec.bridge.name);
    if (link && s && s.state !== 'down') owned.set(spec.bridge.name, link.index);
    for (const p of hostProblems(spec, host, owned)) out.push(failure(CHECK, `${p}: \`vnet up ${spec.name}\` refuses it`, spec.source === 'built-in' ? `write ${path.join(scope.paths.networksDir, `${spec.name}.toml`)} with another \`address\` or \`bridge\`` : `sudoedit ${spec.source}`));
  }
  return out.length ? out : [passed(CHECK)];
}

export async function gatherSubnets(scope: Scope, definitionErrors: string[]): Promise<SubnetFacts> {
  let owned = new Map<string, number>();
  try {
    owned = new Map((await new StateFile(path.join(scope.paths.runtimeDir, 'state.json')).load()).journal.owned);
  } catch {
    /* unreadable as a user: vnetd's status says which networks are up */
  }
  const { Rtnl } = await import('../netlink/rtnl.js');
  const rtnl = new Rtnl();
  try {
    const [links, routes, addresses] = await Promise.all([rtnl.listLinks(), rtnl.listRoutes(), rtnl.listAddresses()]);
    return { host: { links, routes, addresses }, owned, definitionErrors };
  } catch (err) {
    return { host: { unreadable: reasonOf(err) }, owned, definitionErrors };
  } finally {
    rtnl.close();
  }
}
