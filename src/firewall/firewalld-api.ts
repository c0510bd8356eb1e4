/**
 * Which firewalld zone a vnet bridge belongs in, and what firewalld's D-Bus API says. Pure.
 *
 * One zone per forward mode, because firewalld decides forwarding between zones by policies and
 * a policy names zones, not interfaces (etc/firewalld: the zone and policy files `make install`
 * puts beside firewalld's own):
 *   vnet           NAT networks: out to every zone (policy vnet-out), nothing new in
 *   vnet-routed    routed networks: out (vnet-out) and in (vnet-routed-in)
 *   vnet-isolated  isolated networks: guests among themselves only (no policy at all)
 * In each, the host answers DHCP, DHCPv6 and DNS (and ICMP) and rejects everything else.
 * "open" asks nothing of firewalld; "bridge" is the admin's own bridge, whose zone is the admin's.
 */
import type { ForwardMode } from '../spec/spec.js';

export const FIREWALLD = {
  name: 'org.fedoraproject.FirewallD1',
  path: '/org/fedoraproject/FirewallD1',
  iface: 'org.fedoraproject.FirewallD1',
  zoneIface: 'org.fedoraproject.FirewallD1.zone',
} as const;

const ZONES: Readonly<Record<ForwardMode, string | undefined>> = {
  nat: 'vnet',
  route: 'vnet-routed',
  isolated: 'vnet-isolated',
  open: undefined,
  bridge: undefined,
};

/** Every zone vnet ships: the ones whose interfaces are vnet's bindings. */
export const VNET_ZONES: readonly string[] = [...new Set(Object.values(ZONES).filter((z): z is string => z !== undefined))];

/** The zone a bridge of this forward mode is bound to; undefined: none (vnet binds nothing). */
export function zoneFor(mode: ForwardMode): string | undefined {
  return ZONES[mode];
}

export function isVnetZone(zone: string): boolean {
  return VNET_ZONES.includes(zone);
}

/**
 * firewalld answers a refused call with the D-Bus error org.fedoraproject.FirewallD1.Exception
 * whose text starts with its code: "ZONE_CONFLICT: 'virbr0' already bound to 'public'".
 */
export function firewalldCode(text: string): string | undefined {
  return /^([A-Z][A-Z_]+):/.exec(text)?.[1];
}

/** The interfaces of vnet's zones in an answer of zone.getActiveZones (a{sa{sas}}). */
export function boundInterfaces(active: unknown): Set<string> {
  const out = new Set<string>();
  if (!active || typeof active !== 'object') return out;
  for (const zone of VNET_ZONES) {
    const entry = Object.hasOwn(active, zone) ? (active as Record<string, unknown>)[zone] : undefined;
    const ifaces = entry && typeof entry === 'object' && Object.hasOwn(entry, 'interfaces') ? (entry as Record<string, unknown>).interfaces : undefined;
    if (Array.isArray(ifaces)) for (const i of ifaces) if (typeof i === 'string') out.add(i);
  }
  return out;
}

/** The parts of a D-Bus message a signal is judged by. */
export interface SignalLike {
  type: number;
  sender?: string;
  path?: string;
  interface?: string;
  member?: string;
  body?: unknown[];
}

const SIGNAL = 4;
const BUS = 'org.freedesktop.DBus';

/**
 * What a signal means for vnet's bindings: firewalld's name got a new owner ("" when it stopped),
 * or firewalld reloaded (dropping runtime bindings). Only the bus daemon speaks for name owners,
 * and only firewalld's current owner (`owner`, a unique name) for a reload: any peer may send a
 * unicast signal to vnetd, and none of them may make it re-run its bindings at will.
 */
export function firewalldSignal(msg: SignalLike, owner: string): { owner: string } | 'reloaded' | undefined {
  if (msg.type !== SIGNAL) return undefined;
  if (msg.sender === BUS && msg.path === '/org/freedesktop/DBus' && msg.interface === BUS && msg.member === 'NameOwnerChanged') {
    const [name, , now] = msg.body ?? [];
    return name === FIREWALLD.name && typeof now === 'string' ? { owner: now } : undefined;
  }
  if (owner !== '' && msg.sender === owner && msg.path === FIREWALLD.path && msg.interface === FIREWALLD.iface && msg.member === 'Reloaded') return 'reloaded';
  return undefined;
}

/** The match rules that bring those signals (the bus resolves firewalld's well-known name). */
export const MATCH_RULES: readonly string[] = [
  `type='signal',sender='${BUS}',path='/org/freedesktop/DBus',interface='${BUS}',member='NameOwnerChanged',arg0='${FIREWALLD.name}'`,
  `type='signal',sender='${FIREWALLD.name}',path='${FIREWALLD.path}',interface='${FIREWALLD.iface}',member='Reloaded'`,
];
