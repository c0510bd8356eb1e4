/**
 * firewalld (Fedora, RHEL): its table rejects what its zones do not allow, so while a network is
 * up vnetd binds its bridge to one of vnet's zones (../firewall/firewalld.ts). That needs vnet's
 * zones installed where firewalld reads them (`make install`, then a reload). This check asks
 * firewalld over the system bus (DBUS_SYSTEM_BUS_ADDRESS) whether it runs, which zones it has, and
 * the zone of each up network's bridge; it never starts firewalld (NO_AUTO_START).
 */
import type { MessageBus } from 'dbus-next';
import { FIREWALLD, zoneFor } from '../firewall/firewalld-api.js';
import { failure, isUnreadable, note, passed, warning, type Finding, type Unreadable } from './finding.js';
import { list, upNetworks, type Scope } from './scope.js';

export interface FirewalldFacts {
  /** false: no firewalld on the bus (or no bus) */
  running: boolean | Unreadable;
  /** its zones (when running) */
  zones: string[];
  /** bridge → its zone now ("" for none), for the up networks */
  zoneOf: Map<string, string>;
}

const CHECK = 'firewalld';
const NO_AUTO_START = 2;
const DEFAULT_SYSTEM_BUS = 'unix:path=/var/run/dbus/system_bus_socket';

export function judgeFirewalld(f: FirewalldFacts, scope: Scope): Finding[] {
  if (isUnreadable(f.running)) return [note(CHECK, `could not ask firewalld: ${f.running.unreadable}`)];
  if (!f.running) return [passed(CHECK)];
  const out: Finding[] = [];
  const needed = [...new Set(scope.networks.map((n) => zoneFor(n.forward.mode)).filter((z): z is string => z !== undefined))];
  const missing = needed.filter((z) => !f.zones.includes(z));
  if (missing.length > 0)
    out.push(
      failure(
        CHECK,
        `firewalld runs and has no zone ${list(missing.map((z) => `"${z}"`))}: vnet cannot bind its bridges, \`vnet up\` fails, and firewalld would reject the guests' DHCP, DNS and forwarding`,
        'sudo make install && sudo firewall-cmd --reload   # installs vnet\'s zones and policies beside firewalld\'s',
      ),
    );
  for (const n of upNetworks(scope)) {
    const want = zoneFor(n.forward.mode);
    const now = f.zoneOf.get(n.bridge.name);
    if (want === undefined || now === undefined || now === want || missing.includes(want)) continue;
    out.push(
      now === ''
        ? warning(CHECK, `network ${n.name} is up but its bridge ${n.bridge.name} is in no firewalld zone: firewalld's default zone decides, and usually rejects DHCP and DNS`, `sudo systemctl restart vnetd   # binds it again; or: sudo firewall-cmd --zone=${want} --change-interface=${n.bridge.name}`)
        : note(CHECK, `bridge ${n.bridge.name} of network ${n.name} is in your firewalld zone "${now}", not vnet's "${want}": DHCP, DNS and forwarding pass only if that zone allows them`, `sudo firewall-cmd --zone=${want} --change-interface=${n.bridge.name}   # to hand it to vnet's zone`),
    );
  }
  return out.length ? out : [passed(CHECK)];
}

export async function gatherFirewalld(scope: Scope, address = process.env.DBUS_SYSTEM_BUS_ADDRESS || DEFAULT_SYSTEM_BUS, timeoutMs = 10_000): Promise<FirewalldFacts> {
  const { default: dbus } = await import('dbus-next');
  const none: FirewalldFacts = { running: false, zones: [], zoneOf: new Map() };
  let bus: MessageBus | undefined;
  const within = <T>(p: Promise<T>): Promise<T> =>
    Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer on ${address} in ${timeoutMs} ms`)), timeoutMs).unref())]);
  try {
    bus = dbus.sessionBus({ busAddress: address });
    const b = bus;
    await within(
      new Promise<void>((resolve, reject) => {
        b.on('error', reject);
        b.once('connect', () => resolve());
      }),
    );
    const call = async (dest: string, path: string, iface: string, member: string, signature = '', body: unknown[] = [], flags = 0) =>
      (await within(b.call(new dbus.Message({ destination: dest, path, interface: iface, member, signature, body, flags }))))?.body ?? [];
    const [has] = await call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'NameHasOwner', 's', [FIREWALLD.name]);
    if (has !== true) return none;
    const fw = (member: string, signature = '', body: unknown[] = []) => call(FIREWALLD.name, FIREWALLD.path, FIREWALLD.zoneIface, member, signature, body, NO_AUTO_START);
    const [zones] = await fw('getZones');
    const zoneOf = new Map<string, string>();
    for (const n of upNetworks(scope)) {
      const [z] = await fw('getZoneOfInterface', 's', [n.bridge.name]).catch(() => ['']);
      zoneOf.set(n.bridge.name, typeof z === 'string' ? z : '');
    }
    return { running: true, zones: Array.isArray(zones) ? zones.filter((z): z is string => typeof z === 'string') : [], zoneOf };
  } catch (err) {
    const msg = (err as Error).message ?? String(err);
    // no bus at all (a host without D-Bus, or a test's empty address): firewalld cannot run there
    if (/ENOENT|ECONNREFUSED/.test(msg)) return none;
    return { running: { unreadable: msg }, zones: [], zoneOf: new Map() };
  } finally {
    bus?.disconnect();
  }
}
