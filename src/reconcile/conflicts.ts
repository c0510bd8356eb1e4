/**
 * Subnet safety: does a network's subnet (either family) overlap something the host already
 * routes or carries? A route or an address of another interface that overlaps the subnet (either
 * contains the other; not only equal) is a conflict, named by its interface. Default routes are
 * not (every subnet is "inside" 0.0.0.0/0), nor is anything on the network's own bridge. Pure:
 * the diff refuses such a network, the route watch reports one that appears while it is up, and
 * `vnet check` names it.
 */
import type { Link, LinkAddress, Route } from '../netlink/rtnl.js';
import { overlapsParsed, parsedSubnet, parseIfAddress, parseSubnet, subnetOf, type ParsedSubnet, type Subnet } from '../net/ip.js';
import type { NetworkSpec } from '../spec/spec.js';

/** What the host holds that a subnet can collide with. */
export interface HostAddressing {
  links: ReadonlyArray<Pick<Link, 'index' | 'name'>>;
  routes: readonly Route[];
  addresses: readonly LinkAddress[];
}

export interface SubnetConflict {
  /** the network's subnet, "192.168.122.0/24" */
  subnet: string;
  /** the interface whose route or address overlaps it, "tun0" */
  interface: string;
  /** what overlaps: "route 192.168.0.0/16", "address 192.168.122.7/24" */
  detail: string;
  /** the definition key that gave the subnet: "address" or "address6" */
  key: 'address' | 'address6';
}

function nameOf(host: HostAddressing, index: number | undefined): string {
  if (index === undefined) return 'several interfaces (a multipath route)';
  return host.links.find((l) => l.index === index)?.name ?? `ifindex ${index}`;
}

/** The host's routes and addresses with their subnets parsed, once per listing. */
interface HostSpans {
  routes: Array<{ span: ParsedSubnet; oif: number | undefined; dst: string }>;
  addresses: Array<{ span: ParsedSubnet; index: number; text: string }>;
}

/**
 * Parsed once per listing of the host: every network is checked against the same listing, and
 * parsing each route and address again for each network made a check cost networks × routes
 * parses (half a second of vnetd's main thread at 220 networks, measured for issue 15).
 */
const spansCache = new WeakMap<HostAddressing, HostSpans>();

function spansOf(host: HostAddressing): HostSpans {
  let spans = spansCache.get(host);
  if (spans) return spans;
  spans = { routes: [], addresses: [] };
  for (const r of host.routes) {
    const dst = parseSubnet(r.dst);
    // a default route is no conflict: every subnet is inside it
    if (dst && dst.prefix > 0) spans.routes.push({ span: parsedSubnet(dst), oif: r.oif, dst: r.dst });
  }
  for (const x of host.addresses) {
    const text = `${x.address}/${x.prefix}`;
    const theirs = parseIfAddress(text);
    if (theirs) spans.addresses.push({ span: parsedSubnet(subnetOf(theirs)), index: x.index, text });
  }
  spansCache.set(host, spans);
  return spans;
}

/**
 * The first thing on the host that overlaps `subnet`, apart from what is on `ownIndex` (the
 * network's own bridge, when it exists).
 */
export function overlapOf(subnet: Subnet, host: HostAddressing, ownIndex: number | undefined): { interface: string; detail: string } | undefined {
  const mine = parsedSubnet(subnet);
  const spans = spansOf(host);
  for (const r of spans.routes) {
    if ((r.oif !== undefined && r.oif === ownIndex) || !overlapsParsed(r.span, mine)) continue;
    return { interface: nameOf(host, r.oif), detail: `route ${r.dst}` };
  }
  for (const x of spans.addresses) {
    if (x.index === ownIndex || !overlapsParsed(mine, x.span)) continue;
    return { interface: nameOf(host, x.index), detail: `address ${x.text}` };
  }
  return undefined;
}

/**
 * The first of the network's subnets that something else on the host uses, or undefined. With
 * `newOnly`, addresses its bridge already carries are not checked: they were up before whatever
 * overlaps them now (a restarted vnetd keeps such a network; the route watch reports the conflict).
 */
export function subnetConflict(spec: NetworkSpec, host: HostAddressing, opts: { newOnly?: boolean } = {}): SubnetConflict | undefined {
  const ownIndex = host.links.find((l) => l.name === spec.bridge.name)?.index;
  const carried = (a: { address: string; prefix: number }) => host.addresses.some((x) => x.index === ownIndex && x.address === a.address && x.prefix === a.prefix);
  for (const a of spec.addresses) {
    if (opts.newOnly && ownIndex !== undefined && carried(a)) continue;
    const hit = overlapOf(subnetOf(a), host, ownIndex);
    if (hit) return { subnet: a.cidr, ...hit, key: a.family === 4 ? 'address' : 'address6' };
  }
  return undefined;
}

/** The sentence every front says about a conflict: "subnet X is already in use by interface Y (route Z)". */
export function describeConflict(c: Pick<SubnetConflict, 'subnet' | 'interface' | 'detail'>): string {
  return `subnet ${c.subnet} is already in use by interface ${c.interface} (${c.detail})`;
}
