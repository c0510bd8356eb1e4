/**
 * A thin typed wrapper over rtnetlink (the `netlink` package): links, addresses and routes of
 * both families. No `ip` subprocess. Every failure is a NetlinkError naming the operation and
 * the object.
 */
import netlink from 'netlink';
import type { RtNetlinkSocket, rt as rtTypes } from 'netlink';
import { ifnameProblem } from '../config/names.js';
import { broadcastOf, fromBytes, parseIfAddress, rangeOf, subnetOf, toBytes, type Family } from '../net/ip.js';
import { Mutex } from '../sys/mutex.js';
import { encodeLinkInfoKind, linkFromMessage, macToBuffer, type Link } from './encode.js';
import { NetlinkError, wrapError } from './errors.js';

export type { Link } from './encode.js';

/** An address on a link, as the kernel reports it. */
export interface LinkAddress {
  family: Family;
  index: number;
  address: string;
  prefix: number;
}

/** A route of the main table. */
export interface Route {
  family: Family;
  /** "10.0.0.0/8"; "0.0.0.0/0" and "::/0" for default routes */
  dst: string;
  oif?: number;
}

/** Attributes set together in one RTM_SETLINK message. */
export interface LinkChange {
  mtu?: number;
  mac?: string;
  /** ifindex of the new master; 0 releases the link from its master */
  master?: number;
  up?: boolean;
}

const AF_INET = 2;
const AF_INET6 = 10;
const RT_TABLE_MAIN = 254;
const RTN_UNICAST = 1;
// nlmsg flags for new objects: NLM_F_CREATE | NLM_F_EXCL (fail with EEXIST when present)
const CREATE_EXCL = 0x400 | 0x200;
const REQUEST_TIMEOUT_MS = 10_000;

const afOf = (f: Family) => (f === 4 ? AF_INET : AF_INET6);

function checkedAddress(op: string, object: string, address: string, prefix: number): { bytes: Buffer; family: Family } {
  try {
    const bytes = toBytes(address);
    const family: Family = bytes.length === 4 ? 4 : 6;
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128)) throw new RangeError(`prefix ${prefix} is out of range`);
    return { bytes, family };
  } catch (err) {
    throw new NetlinkError(op, object, 'EINVAL', { cause: err, detail: (err as Error).message });
  }
}

export class Rtnl {
  private readonly sock: RtNetlinkSocket;
  private closed = false;
  /** one request at a time: the kernel allows one dump per socket, and the package does not check sequence numbers */
  private readonly queue = new Mutex();

  /** Opens an rtnetlink socket in the caller's network namespace. */
  constructor() {
    try {
      this.sock = netlink.createRtNetlink();
    } catch (err) {
      throw wrapError('open', 'rtnetlink socket', err);
    }
    // A receive error has no request to fail; the request's timeout reports it.
    this.sock.socket.on('error', () => undefined);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sock.socket.close();
  }

  private call<T>(op: string, object: string, fn: () => Promise<T>): Promise<T> {
    return this.queue.run(async () => {
      if (this.closed) throw new NetlinkError(op, object, 'EBADF', { detail: 'rtnetlink socket is closed' });
      try {
        return await fn();
      } catch (err) {
        throw wrapError(op, object, err);
      }
    });
  }

  // ---- links ----

  async listLinks(): Promise<Link[]> {
    const msgs = await this.call('list', 'links', () => this.sock.getLinks({}, {}, { timeout: REQUEST_TIMEOUT_MS }));
    return msgs.map(linkFromMessage).filter((l): l is Link => l !== undefined);
  }

  getLink(index: number): Promise<Link | undefined> {
    return this.getOne('get link', `ifindex ${index}`, { index }, {});
  }

  async getLinkByName(name: string): Promise<Link | undefined> {
    if (ifnameProblem(name)) return undefined;
    return this.getOne('get link', name, {}, { ifname: name });
  }

  private async getOne(op: string, object: string, data: rtTypes.Link, attrs: { ifname?: string }): Promise<Link | undefined> {
    try {
      const msgs = await this.call(op, object, () => this.sock.getLink(data, attrs, { timeout: REQUEST_TIMEOUT_MS }));
      return msgs[0] ? linkFromMessage(msgs[0]) : undefined;
    } catch (err) {
      if (err instanceof NetlinkError && err.errno === 'ENODEV') return undefined;
      throw err;
    }
  }

  /**
   * Create a bridge (down); EEXIST when a link of that name exists, whatever its kind.
   * Give `mac` to pin the bridge's address: otherwise the kernel keeps changing it
   * to the lowest MAC among its ports (a lone tap's fe:... included).
   */
  async createBridge(name: string, opts: { mtu?: number; mac?: string } = {}): Promise<Link> {
    const op = 'create bridge';
    const bad = ifnameProblem(name);
    if (bad) throw new NetlinkError(op, JSON.stringify(name), 'EINVAL', { detail: `interface name ${bad}` });
    const attrs: { ifname: string; linkinfo: Buffer; mtu?: number; address?: Buffer } = { ifname: name, linkinfo: encodeLinkInfoKind('bridge') };
    if (opts.mtu !== undefined) attrs.mtu = opts.mtu;
    if (opts.mac !== undefined) {
      try {
        attrs.address = macToBuffer(opts.mac);
      } catch (err) {
        throw new NetlinkError(op, name, 'EINVAL', { cause: err, detail: (err as Error).message });
      }
    }
    await this.call(op, name, () => this.sock.newLink({}, attrs, { flags: CREATE_EXCL, timeout: REQUEST_TIMEOUT_MS }));
    const link = await this.getLinkByName(name);
    if (!link) throw new NetlinkError(op, name, 'ENODEV', { detail: 'gone right after creation' });
    return link;
  }

  async deleteLink(index: number): Promise<void> {
    await this.call('delete link', `ifindex ${index}`, () => this.sock.delLink({ index }, {}, { timeout: REQUEST_TIMEOUT_MS }));
  }

  setUp(index: number, up: boolean): Promise<void> {
    return this.configureLink(index, { up });
  }

  /**
   * Change several attributes in one RTM_SETLINK: the kernel applies address,
   * MTU, master, then flags, and stops at the first failure.
   */
  async configureLink(index: number, change: LinkChange): Promise<void> {
    const parts: string[] = [];
    const attrs: { mtu?: number; address?: Buffer; master?: number } = {};
    const data: rtTypes.Link = { index };
    if (change.mac !== undefined) {
      try {
        attrs.address = macToBuffer(change.mac);
      } catch (err) {
        throw new NetlinkError('set mac on', `ifindex ${index}`, 'EINVAL', { cause: err, detail: (err as Error).message });
      }
      parts.push(`mac ${change.mac}`);
    }
    if (change.mtu !== undefined) {
      attrs.mtu = change.mtu;
      parts.push(`mtu ${change.mtu}`);
    }
    if (change.master !== undefined) {
      attrs.master = change.master;
      parts.push(change.master ? `master ifindex ${change.master}` : 'nomaster');
    }
    if (change.up !== undefined) {
      data.flags = change.up ? { up: true } : {};
      data.change = { up: true };
      parts.push(change.up ? 'up' : 'down');
    }
    if (parts.length === 0) return;
    await this.call(`set ${parts.join(' ')} on`, `ifindex ${index}`, () => this.sock.setLink(data, attrs, { timeout: REQUEST_TIMEOUT_MS }));
  }

  // ---- addresses ----

  /**
   * Add address/prefix (either family); EEXIST if present. IPv4 gets its broadcast address;
   * IPv6 is added without duplicate address detection (NODAD): a bridge with no ports has no
   * carrier, and a tentative address would keep dnsmasq from binding it.
   */
  async addAddress(index: number, address: string, prefix: number): Promise<void> {
    const object = `${address}/${prefix} to ifindex ${index}`;
    const { bytes, family } = checkedAddress('add address', object, address, prefix);
    const attrs: rtTypes.AddressAttrs = { local: bytes, address: bytes };
    const data: rtTypes.Address = { family: afOf(family), prefixlen: prefix, index };
    if (family === 4) {
      const brd = broadcastOf(subnetOf(parseIfAddress(`${address}/${prefix}`)!));
      if (brd) attrs.broadcast = toBytes(brd);
    } else {
      data.flags = { nodad: true };
    }
    await this.call('add address', object, () => this.sock.newAddress(data, attrs, { flags: CREATE_EXCL, timeout: REQUEST_TIMEOUT_MS }));
  }

  async delAddress(index: number, address: string, prefix: number): Promise<void> {
    const object = `${address}/${prefix} from ifindex ${index}`;
    const { bytes, family } = checkedAddress('delete address', object, address, prefix);
    await this.call('delete address', object, () =>
      this.sock.delAddress({ family: afOf(family), prefixlen: prefix, index }, { local: bytes, address: bytes }, { timeout: REQUEST_TIMEOUT_MS }),
    );
  }

  /** Addresses of both families (of one link when `index` is given). */
  async listAddresses(index?: number): Promise<LinkAddress[]> {
    const msgs = await this.call('list', 'addresses', () => this.sock.getAddresses({}, {}, { timeout: REQUEST_TIMEOUT_MS }));
    return msgs.map(addressFromMessage).filter((a): a is LinkAddress => a !== undefined && (index === undefined || a.index === index));
  }

  // ---- routes ----

  /**
   * Unicast routes of the main table, both families: what a subnet could collide with. IPv6
   * link-local and multicast routes (on every interface) are left out.
   */
  async listRoutes(): Promise<Route[]> {
    const msgs = await this.call('list', 'routes', () => this.sock.getRoutes({}, {}, { timeout: REQUEST_TIMEOUT_MS }));
    return msgs.map(routeFromMessage).filter((r): r is Route => r !== undefined);
  }
}

/** One parsed RTM_NEWADDR/RTM_DELADDR (or dump entry) as a LinkAddress; undefined for other families or malformed ones. */
export function addressFromMessage(m: rtTypes.AddressMessage): LinkAddress | undefined {
  const i = m.data.index;
  const fam = m.data.family === AF_INET ? 4 : m.data.family === AF_INET6 ? 6 : undefined;
  const raw = fam === 4 ? (m.attrs.local ?? m.attrs.address) : m.attrs.address;
  if (fam === undefined || i === undefined || !raw || raw.length !== (fam === 4 ? 4 : 16)) return undefined;
  return { family: fam, index: i, address: fromBytes(raw), prefix: m.data.prefixlen ?? (fam === 4 ? 32 : 128) };
}

/**
 * One parsed RTM_NEWROUTE/RTM_DELROUTE (or dump entry) as a Route, when it is one a subnet can
 * collide with: a unicast route of the main table, not IPv6 link-local or multicast.
 */
export function routeFromMessage(m: rtTypes.RouteMessage): Route | undefined {
  const fam = m.data.family === AF_INET ? 4 : m.data.family === AF_INET6 ? 6 : undefined;
  if (fam === undefined) return undefined;
  if ((m.attrs.table ?? m.data.table) !== RT_TABLE_MAIN) return undefined;
  const type = m.data.type;
  if (type !== undefined && type !== RTN_UNICAST && type !== 'UNICAST') return undefined;
  const dst = m.attrs.dst && m.attrs.dst.length === (fam === 4 ? 4 : 16) ? fromBytes(m.attrs.dst) : fam === 4 ? '0.0.0.0' : '::';
  if (fam === 6 && ['linkLocal', 'multicast'].includes(rangeOf(dst))) return undefined;
  const route: Route = { family: fam, dst: `${dst}/${m.data.dstLen ?? 0}` };
  if (m.attrs.oif) route.oif = m.attrs.oif;
  return route;
}
