/**
 * A network's port forwards in vnet's table (pure, from the spec):
 *
 *   dnat-BR   reached through the dnat_tcp / dnat_udp maps by host port, from prerouting (what
 *             arrives for the host's addresses) and output (what the host itself sends to them):
 *             `tcp dport 8080 dnat ip to 10.0.0.5:80`
 *   to-BR     (nat) the translated connection to that guest and port is let in
 *   nat-BR    hairpin: a guest reaching a forward into its own subnet through a host address is
 *             masqueraded, so the answer comes back through the host and not straight from the
 *             other guest (which the first guest would drop)
 *
 * Only forwards whose guest resolves inside the subnet apply (a `[[hosts]]` name edited away, a
 * run-time forward left outside an edited subnet: listed, not applied).
 */
import { addressesOf } from '../spec/spec.js';
import { guestAddress, modeProblem } from '../spec/port-forwards.js';
import type { NetworkSpec, PortForward } from '../spec/spec.js';
import { ACCEPT, addr, dnatted, dport, eq, type Prefix, type Rule } from './expr.js';

export type Applied = PortForward & { ip: string };

/** The forwards of `spec` that apply now, each with its guest's address. */
export function appliedForwards(spec: NetworkSpec): Applied[] {
  if (!spec.portForwards?.length || modeProblem(spec) || addressesOf(spec, 4).length === 0) return [];
  const out: Applied[] = [];
  for (const f of spec.portForwards) {
    const where = guestAddress(spec, f.guest);
    if ('ip' in where) out.push({ ...f, ip: where.ip });
  }
  return out;
}

/** dnat-BR's rules: one translation a forward. */
export function dnatRules(applied: readonly Applied[]): Rule[] {
  return applied.map((f) => [eq(dport(f.proto), f.hostPort), { dnat: { family: 'ip', addr: f.ip, port: f.guestPort } }]);
}

/** to-BR's rules letting the translated connections in (before its final reject). */
export function acceptForwarded(applied: readonly Applied[]): Rule[] {
  return applied.map((f) => [eq(addr(4, 'daddr'), f.ip), eq(dport(f.proto), f.guestPort), dnatted(), ACCEPT]);
}

/** nat-BR's hairpin rule (none without forwards). */
export function hairpin(applied: readonly Applied[], net: Prefix): Rule[] {
  return applied.length ? [[eq(addr(4, 'daddr'), net), dnatted(), { masquerade: null }]] : [];
}
