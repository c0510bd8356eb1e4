/**
 * address = "auto" in vnetd: the subnets the allocator picked, put into the definitions as they are
 * loaded (sync, from the picks it keeps), and a free one picked before a network comes up (it needs
 * the host's routes and addresses, so it cannot happen at parse time). A pick stays while it is
 * free; one the host (or another network) took meanwhile is picked again, and that is logged. A
 * network that is up keeps its subnet whatever appears: the route watch reports that.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { DefinitionSet } from '../config/networks.js';
import { cidrOf, overlaps, parseIfAddress, parseSubnet, subnetOf, type Subnet } from '../net/ip.js';
import type { HostAddressing } from '../reconcile/conflicts.js';
import { withSubnet } from '../spec/auto.js';
import type { NetworkSpec } from '../spec/spec.js';
import type { SubnetAllocator } from './allocator.js';

/** The allocator's key of a network: admin networks by name, user networks by owner uid and their own name. */
export function allocationKey(spec: NetworkSpec): string {
  return spec.owner.kind === 'admin' ? `admin:${spec.name}` : userAllocationKey(spec.owner.uid, spec.name.slice(spec.name.indexOf(':') + 1));
}

/**
 * A user network's key: "user:" and a hash of its owner's uid and its name, since the picks file is
 * readable by every local user and a user network's existence is its owner's and root's to know.
 */
export function userAllocationKey(uid: number, name: string): string {
  return `user:${createHash('sha256').update(`${uid}\0${name}`).digest('hex').slice(0, 20)}`;
}

/** The subnets the host uses now: routes (but the default) and addresses, those of `ownBridge` aside. */
export function hostSubnets(host: HostAddressing, ownBridge?: string): Subnet[] {
  const own = ownBridge === undefined ? undefined : host.links.find((l) => l.name === ownBridge)?.index;
  const used: Subnet[] = [];
  for (const r of host.routes) {
    const dst = parseSubnet(r.dst);
    if (dst && dst.prefix > 0 && (r.oif === undefined || r.oif !== own)) used.push(dst);
  }
  for (const a of host.addresses) {
    const x = parseIfAddress(`${a.address}/${a.prefix}`);
    if (x && a.index !== own) used.push(subnetOf(x));
  }
  return used;
}

const subnetsOf = (specs: Iterable<NetworkSpec>) => [...specs].flatMap((s) => s.addresses.map(subnetOf));

export class AutoSubnets {
  constructor(
    private readonly allocator: SubnetAllocator,
    private readonly pool: Subnet,
    private readonly log: Logger,
  ) {}

  /**
   * The set with each "auto" network's current pick filled in. One whose pick is gone from the
   * pool or now overlaps another network stays without: it gets a subnet when it comes up.
   */
  resolveSet(set: DefinitionSet): DefinitionSet {
    const fixed = [...set.networks.values()].filter((s) => !s.auto);
    const taken = subnetsOf(fixed);
    for (const spec of set.networks.values()) {
      if (!spec.auto) continue;
      const pick = this.allocator.current(allocationKey(spec));
      if (!pick || pick.prefix !== spec.auto.prefixLength || !overlaps(pick, this.pool) || pick.prefix < this.pool.prefix) continue;
      if (taken.some((t) => overlaps(t, pick))) continue;
      taken.push(pick);
      set.networks.set(spec.name, withSubnet(spec, pick));
    }
    return set;
  }

  /**
   * Let go of the picks of admin networks that no longer have address = "auto" (deleted, or given
   * a fixed address). One whose file does not parse right now keeps its pick.
   */
  async prune(set: DefinitionSet): Promise<void> {
    for (const key of this.allocator.keys()) {
      const name = /^admin:(.+)$/.exec(key)?.[1];
      if (name === undefined || set.errors.has(name) || set.networks.get(name)?.auto) continue;
      await this.allocator.release(key);
      this.log.info({ network: name }, 'released the subnet address = "auto" had picked');
    }
  }

  /**
   * The spec to bring up: an "auto" network with a subnet free on the host now (its own bridge
   * aside) and among `others` (every other network vnet knows), picked again when its pick is not.
   */
  async prepare(spec: NetworkSpec, host: HostAddressing, others: readonly NetworkSpec[]): Promise<NetworkSpec> {
    if (!spec.auto) return spec;
    const used: Subnet[] = [...subnetsOf(others.filter((o) => o.name !== spec.name)), ...hostSubnets(host, spec.bridge.name)];
    const key = allocationKey(spec);
    const { subnet, previous } = await this.allocator.allocate(key, this.pool, spec.auto.prefixLength, used);
    if (previous)
      this.log.warn({ network: spec.name, was: cidrOf(previous), now: cidrOf(subnet) }, `network "${spec.name}": its subnet ${cidrOf(previous)} is in use now; address = "auto" picked ${cidrOf(subnet)}`);
    else if (!spec.addresses.some((a) => a.family === 4)) this.log.info({ network: spec.name, subnet: cidrOf(subnet) }, `network "${spec.name}": address = "auto" picked ${cidrOf(subnet)}`);
    return withSubnet({ ...spec, addresses: spec.addresses.filter((a) => a.family !== 4) }, subnet);
  }
}
