/**
 * Port forwards as data, pure: what a forward may be (ports, a guest inside the network, a mode
 * that forwards), where its guest is (an address, or a static host's name resolved through the
 * spec), and which forward already holds a host port. Shared by the definition's `[[forwards]]`
 * (spec/keys/forwards.ts), `vnet forward add` (daemon/port-forwards.ts) and the rules
 * (firewall/forward-rules.ts), so all three say the same thing.
 */
import { broadcastOf, canonical, contains, isAddress, subnetOf } from '../net/ip.js';
import { show } from './keys/section.js';
import { primary4, type NetworkSpec, type PortForward } from './spec.js';

/** Most forwards one network may have (definition and run time together): each is a rule or two per packet's first lookup. */
export const MAX_FORWARDS_PER_NETWORK = 64;
/** Most forwards `vnet forward add` keeps in all (the state file stays a few tens of KiB). */
export const MAX_RUNTIME_FORWARDS = 256;

export const PROTOS = ['tcp', 'udp'] as const;

export function isProto(v: unknown): v is PortForward['proto'] {
  return v === 'tcp' || v === 'udp';
}

/** A port 1..65535 from a number or a decimal string; undefined otherwise. */
export function portOf(v: unknown): number | undefined {
  if (typeof v === 'bigint') v = Number(v);
  if (typeof v === 'string' && /^[1-9][0-9]{0,4}$/.test(v)) v = Number(v);
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535 ? v : undefined;
}

/** "10.0.0.5", "10.0.0.5:80", "web", "web:80" → the guest as written and its port (undefined: the host port). */
export function splitGuest(text: string): { guest: string; port?: number } | string {
  const colon = text.lastIndexOf(':');
  if (colon < 0) return { guest: text };
  const port = portOf(text.slice(colon + 1));
  if (port === undefined) return `port ${JSON.stringify(text.slice(colon + 1))} in ${JSON.stringify(text)} is not a port 1..65535`;
  return { guest: text.slice(0, colon), port };
}

/**
 * The static hosts' names and IPv4 addresses, if the spec has `[[hosts]]` (`dhcp.hosts`: name and
 * ips); none otherwise, so a guest is then an address only.
 */
function staticHosts(spec: NetworkSpec): Array<{ name: string; ip: string }> {
  const out: Array<{ name: string; ip: string }> = [];
  for (const h of spec.dhcp.hosts ?? []) {
    const ip = h.ips.find((a) => isAddress(a, 4));
    if (h.name !== undefined && ip) out.push({ name: h.name, ip });
  }
  return out;
}

/** Where `guest` is: its IPv4 address, or why it is not one of this network's guests. */
export function guestAddress(spec: NetworkSpec, guest: string): { ip: string } | { problem: string } {
  const v4 = primary4(spec);
  let ip: string;
  if (isAddress(guest, 4)) ip = canonical(guest)!;
  else if (isAddress(guest)) return { problem: `guest ${guest} is not an IPv4 address (forwards go to IPv4 guests)` };
  else {
    const host = staticHosts(spec).find((h) => h.name === guest);
    if (!host) {
      const known = staticHosts(spec).map((h) => h.name);
      return { problem: `guest ${show(guest)} is neither an IPv4 address nor a static host of network "${spec.name}" (${known.length ? `[[hosts]] names: ${known.join(', ')}` : 'it has no [[hosts]] with a name and an IPv4 address'})` };
    }
    ip = host.ip;
  }
  if (!v4) return { problem: spec.auto ? `network "${spec.name}" has address = "auto" and no subnet picked yet: add the forward once it has been up` : `network "${spec.name}" has no IPv4 subnet to forward into` };
  const net = subnetOf(v4);
  if (!contains(net, ip)) return { problem: `guest ${ip} is outside network "${spec.name}" (${v4.cidr})` };
  if (ip === net.network || ip === broadcastOf(net)) return { problem: `guest ${ip} is the network or broadcast address of ${v4.cidr}` };
  if (ip === v4.address) return { problem: `guest ${ip} is the bridge's own address (the host), not a guest` };
  return { ip };
}

/** Why this network cannot have forwards at all, or undefined. */
export function modeProblem(spec: NetworkSpec): string | undefined {
  const mode = spec.forward.mode;
  if (mode === 'nat' || mode === 'route') return undefined;
  return `network "${spec.name}" has forward = "${mode}": port forwards need forward = "nat" or "route" (${mode === 'isolated' ? 'an isolated network takes nothing from outside' : 'vnet adds no rules to it'})`;
}

/** What `forward list` and the error messages call a forward: "tcp 8080 → 10.0.0.5:80". */
export function describeForward(f: Pick<PortForward, 'proto' | 'hostPort' | 'guest' | 'guestPort'>): string {
  return `${f.proto} ${f.hostPort} → ${f.guest}:${f.guestPort}`;
}

/** Who holds `proto`/`hostPort` among these networks' forwards (and its origin), if anyone does. */
export function holderOf(specs: Iterable<NetworkSpec>, proto: PortForward['proto'], hostPort: number): { network: string; forward: PortForward; source: string } | undefined {
  for (const s of specs) {
    const f = s.portForwards?.find((x) => x.proto === proto && x.hostPort === hostPort);
    if (f) return { network: s.name, forward: f, source: s.source };
  }
  return undefined;
}

/** How a holder is named in a refusal: the network, the forward and where it was made. */
export function heldBy(h: NonNullable<ReturnType<typeof holderOf>>): string {
  const where = h.forward.origin === 'runtime' ? 'added with `vnet forward add`' : `in ${h.source}`;
  return `network "${h.network}" forwards it (${describeForward(h.forward)}, ${where})`;
}
