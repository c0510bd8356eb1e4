/**
 * What changed between the running copy of a network and its edited definition, by key, and
 * whether each change can be applied to the running network (the reconciler's diff does the
 * applying: addresses, rules, DHCP/DNS, MTU) or needs it taken down first (its bridge's name,
 * a bridge vnet makes turned into one it does not, or back).
 */
import type { NetworkSpec } from './spec.js';

export interface Change {
  key: string;
  live: boolean;
}

type Probe = { key: string; live: boolean; of: (s: NetworkSpec) => unknown };

/** One entry a key: what it sets in the spec. A key a feature adds gets a line here (or is compared as "definition"). */
const PROBES: readonly Probe[] = [
  { key: 'bridge', live: false, of: (s) => s.bridge.name },
  { key: 'forward', live: false, of: (s) => s.bridge.managed },
  { key: 'forward', live: true, of: (s) => s.forward },
  { key: 'mtu', live: true, of: (s) => s.bridge.mtu },
  { key: 'address', live: true, of: (s) => s.addresses.filter((a) => a.family === 4) },
  { key: 'address6', live: true, of: (s) => s.addresses.filter((a) => a.family === 6) },
  { key: 'dhcp-range', live: true, of: (s) => s.dhcp.range4 },
  { key: 'dhcp6-range', live: true, of: (s) => s.dhcp.range6 },
  { key: 'dhcp-lease-max', live: true, of: (s) => s.dhcp.leaseMax },
  { key: 'dhcp-lease-time', live: true, of: (s) => s.dhcp.leaseTime },
  { key: 'hosts', live: true, of: (s) => s.dhcp.hosts ?? [] },
  { key: 'domain', live: true, of: (s) => s.dns.domain },
  { key: 'dns', live: true, of: (s) => !s.dns.off },
  { key: 'dns-records', live: true, of: (s) => s.dns.records ?? [] },
  { key: 'dns-forwarders', live: true, of: (s) => s.dns.forwarders ?? [] },
  { key: 'allow-users', live: true, of: (s) => s.access.allowUsers },
  { key: 'allow-groups', live: true, of: (s) => s.access.allowGroups },
  { key: 'on-demand', live: true, of: (s) => s.lifecycle.onDemand },
  { key: 'idle-down', live: true, of: (s) => s.lifecycle.idleDown },
  { key: 'standby', live: true, of: (s) => s.lifecycle.standby },
  { key: 'forwards', live: true, of: (s) => s.portForwards ?? [] },
];

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** The changes from `running` to `edited` (empty when they hold the same). */
export function specChanges(running: NetworkSpec, edited: NetworkSpec): Change[] {
  const out: Change[] = [];
  for (const p of PROBES) {
    if (same(p.of(running), p.of(edited)) || out.some((c) => c.key === p.key && c.live === p.live)) continue;
    out.push({ key: p.key, live: p.live });
  }
  // a key no probe knows yet: applied through the diff like the others, named as a whole
  if (out.length === 0 && !same({ ...running, source: '' }, { ...edited, source: '' })) out.push({ key: 'definition', live: true });
  return out;
}
