/**
 * The Manager's D-Bus methods: each one a binding of a method of the API table (src/api/
 * methods.ts) to D-Bus arguments and results. The table checks the parameters and runs the
 * service, so a call means the same thing by D-Bus as by the socket; introspection is made from
 * these bindings.
 */
import { METHODS, type MethodName, type ParamsOf, type ResultOf } from '../api/methods.js';
import type { NetworkStatus } from '../daemon/service.js';
import type { Lease } from '../model.js';
import type { Arg } from './introspect.js';
import { networkPath } from './names.js';

const s = (name: string): Arg => ({ name, type: 's' });
const u = (name: string): Arg => ({ name, type: 'u' });
const b = (name: string): Arg => ({ name, type: 'b' });

/** Lease tuple: mac, ip, hostname, client id, expiry (unix seconds, 0 = never). */
export const LEASE_TYPE = '(sssst)';

/** Port forward tuple: network, proto, host port, guest (as given), guest address, guest port, origin, active. */
export const FORWARD_TYPE = '(ssussusb)';

/**
 * Lease answers on the bus: dbus-next encodes a reply synchronously, so GetLeasesPage answers at
 * most DBUS_PAGE_LEASES and GetLeases at most DBUS_ALL_LEASES (else it refuses, naming
 * GetLeasesPage), so no reply stalls vnetd for long. The byte bound (JSON bytes, never fewer
 * than a lease's bytes on the bus) keeps any reply under the bus's 32 MiB message cap.
 */
const DBUS_PAGE_LEASES = 256;
const DBUS_ALL_LEASES = 1024;
const DBUS_MAX_BYTES = 16 * 1024 * 1024;

/** Thrown for a D-Bus standard error (its full name). */
export class BusError extends Error {
  override name = 'BusError';
  constructor(
    readonly errorName: string,
    message: string,
  ) {
    super(message);
  }
}

export interface DbusBinding<M extends MethodName> {
  name: string;
  in: Arg[];
  out: Arg[];
  method: M;
  params(body: unknown[]): ParamsOf<M>;
  reply(result: ResultOf<M>, params: ParamsOf<M>): unknown[];
  /** the network whose properties may have changed (announced with PropertiesChanged) */
  touches?(result: ResultOf<M>): string | undefined;
}

function bind<M extends MethodName>(m: DbusBinding<M>): DbusBinding<M> {
  return m;
}

function leaseTuples(leases: Lease[]): unknown[] {
  return leases.map((l) => [l.mac, l.ip, l.hostname, l.clientId, BigInt(Math.max(0, Math.trunc(l.expires)))]);
}

const str = (body: unknown[], i: number) => body[i] as string;

export const BINDINGS = [
  bind({ name: 'ListNetworks', in: [], out: [{ name: 'networks', type: 'ao' }], method: 'list', params: () => ({}), reply: (r: NetworkStatus[]) => [r.map((n) => networkPath(n.name))] }),
  bind({ name: 'GetNetworkByName', in: [s('name')], out: [{ name: 'network', type: 'o' }], method: 'status', params: (a) => ({ name: str(a, 0) }), reply: (r) => [networkPath(r.name)] }),
  bind({ name: 'Up', in: [s('name')], out: [{ name: 'network', type: 'o' }], method: 'up', params: (a) => ({ name: str(a, 0) }), reply: (r) => [networkPath(r.name)], touches: (r) => r.name }),
  bind({
    name: 'Down',
    in: [s('name'), b('force')],
    out: [{ name: 'network', type: 'o' }],
    method: 'down',
    params: (a) => ({ name: str(a, 0), force: a[1] === true }),
    reply: (r) => [networkPath(r.name)],
    touches: (r) => r.name,
  }),
  bind({
    name: 'Reload',
    in: [s('name')],
    out: [{ name: 'changed', type: 'a(sas)' }],
    method: 'reload',
    // "": every running network
    params: (a) => ({ name: str(a, 0) === '' ? undefined : str(a, 0) }),
    reply: (r) => [r.map((x) => [x.name, x.changed])],
  }),
  bind({
    name: 'GetLeases',
    in: [s('name')],
    out: [{ name: 'leases', type: `a${LEASE_TYPE}` }],
    method: 'leases',
    params: (a) => ({ name: str(a, 0), after: undefined, limit: DBUS_ALL_LEASES, maxBytes: DBUS_MAX_BYTES }),
    reply: (page, p) => {
      if (page.next !== null)
        throw new BusError(
          'org.freedesktop.DBus.Error.LimitsExceeded',
          `network "${p.name}" has more leases than one GetLeases answer carries (${DBUS_ALL_LEASES}); page through them with GetLeasesPage(s name, s after, u limit)`,
        );
      return [leaseTuples(page.leases)];
    },
  }),
  bind({
    name: 'GetLeasesPage',
    in: [s('name'), s('after'), u('limit')],
    out: [{ name: 'leases', type: `a${LEASE_TYPE}` }, s('next')],
    method: 'leases',
    // limit 0, or more than a page holds: a full page
    params: (a) => ({ name: str(a, 0), after: str(a, 1), limit: Math.min((a[2] as number) || DBUS_PAGE_LEASES, DBUS_PAGE_LEASES), maxBytes: DBUS_MAX_BYTES }),
    reply: (page) => [leaseTuples(page.leases), page.next ?? ''],
  }),
  bind({ name: 'Status', in: [], out: [s('json')], method: 'list', params: () => ({}), reply: (r) => [JSON.stringify(r)] }),
  bind({
    name: 'AddPortForward',
    // guest_port 0: the host port
    in: [s('name'), s('proto'), u('host_port'), s('guest'), u('guest_port')],
    out: [],
    method: 'addPortForward',
    // checked by the API table itself: the bus only guarantees the types
    params: (a) => METHODS.addPortForward.params({ name: a[0], proto: a[1], hostPort: a[2], guest: a[3], guestPort: (a[4] as number) || undefined }),
    reply: () => [],
  }),
  bind({
    name: 'RemovePortForward',
    in: [s('name'), s('proto'), u('host_port')],
    out: [],
    method: 'removePortForward',
    params: (a) => METHODS.removePortForward.params({ name: a[0], proto: a[1], hostPort: a[2] }),
    reply: () => [],
  }),
  bind({
    name: 'ListPortForwards',
    in: [s('name')],
    out: [{ name: 'forwards', type: `a${FORWARD_TYPE}` }],
    method: 'listPortForwards',
    // "": every network
    params: (a) => ({ name: str(a, 0) === '' ? undefined : str(a, 0) }),
    reply: (r) => [r.map((f) => [f.network, f.proto, f.hostPort, f.guest, f.address, f.guestPort, f.origin, f.active])],
  }),
  bind({
    name: 'CreateNetwork',
    in: [s('name'), s('subnet'), s('forward'), b('dhcp'), s('ipv6'), { name: 'allowUsers', type: 'as' }],
    out: [{ name: 'network', type: 'o' }],
    method: 'create',
    // "" for subnet, forward or ipv6: the default ("auto", the first mode the policy allows, no IPv6)
    params: (a) => ({
      name: str(a, 0),
      ...(str(a, 1) ? { subnet: str(a, 1) } : {}),
      ...(str(a, 2) ? { forward: str(a, 2) } : {}),
      dhcp: a[3] === true,
      ...(str(a, 4) ? { ipv6: str(a, 4) } : {}),
      ...((a[5] as string[]).length ? { allowUsers: (a[5] as string[]).slice(0, 33) } : {}),
    }) as ParamsOf<'create'>,
    reply: (r) => [networkPath(r.name)],
  }),
  bind({
    name: 'DeleteNetwork',
    in: [s('name'), b('force')],
    out: [],
    method: 'delete',
    params: (a) => ({ name: str(a, 0), force: a[1] === true }),
    reply: () => [],
  }),
] as const;

export type AnyBinding = DbusBinding<MethodName>;

export function bindingOf(member: string | undefined): AnyBinding | undefined {
  return (BINDINGS as readonly unknown[]).find((x) => (x as AnyBinding).name === member) as AnyBinding | undefined;
}

