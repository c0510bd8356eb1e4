/**
 * A thin typed wrapper over rtnetlink (the `netlink` package): links, IPv4
 * addresses and routes. No `ip` subprocess. Every failure is a NetlinkError
 * naming the operation and the object. The byte encoders the package does not
 * provide (linkinfo, IPv4 and MAC buffers) live here too, exported for tests.
 */
import { Mutex } from '../sys/mutex.js';
import netlink from 'netlink';
import type { RtNetlinkSocket, rt as rtTypes } from 'netlink';
import { isIPv4 } from 'node:net';
import { NetlinkError, wrapError } from './errors.js';

export interface Link {
  index: number;
  name: string;
  /** IFLA_INFO_KIND: 'bridge', 'tun', 'veth', ...; absent for devices without rtnl ops (lo, physical NICs) */
  kind?: string;
  /** administratively up (IFF_UP) */
  up: boolean;
  mtu: number;
  /** ifindex of the master (the bridge of a bridge port) */
  master?: number;
  /** "aa:bb:cc:dd:ee:ff" */
  mac?: string;
}

export interface Address4 {
  index: number;
  address: string;
  prefix: number;
}

export interface Route4 {
  /** "10.0.0.0/8"; "0.0.0.0/0" for the default route */
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
const RT_TABLE_MAIN = 254;
const IFLA_INFO_KIND = 1;
const IFNAMSIZ = 16;
// nlmsg flags for new objects: NLM_F_CREATE | NLM_F_EXCL (fail with EEXIST when present)
const CREATE_EXCL = 0x400 | 0x200;
const REQUEST_TIMEOUT_MS = 10_000;

// ---------------------------------------------------------------- encoders

/** One netlink attribute: 4-byte header (length incl. header, type), payload, zero padding to 4 bytes. */
export function encodeAttr(type: number, payload: Buffer): Buffer {
  const len = 4 + payload.length;
  if (len > 0xffff) throw new RangeError(`netlink attribute ${type} of ${payload.length} bytes is too long`);
  const out = Buffer.alloc((len + 3) & ~3);
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE(type, 2);
  payload.copy(out, 4);
  return out;
}

/** Split an attribute stream into [type, payload] pairs (type without the NESTED/BYTEORDER bits). */
export function decodeAttrs(buf: Buffer): Array<[number, Buffer]> {
  const out: Array<[number, Buffer]> = [];
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    const type = buf.readUInt16LE(off + 2) & 0x3fff;
    if (len < 4 || off + len > buf.length) throw new RangeError(`malformed netlink attribute at offset ${off}`);
    out.push([type, buf.subarray(off + 4, off + len)]);
    off += (len + 3) & ~3;
  }
  return out;
}

/** Payload of IFLA_LINKINFO asking for a device of `kind`: IFLA_INFO_KIND with a NUL-terminated string. */
export function encodeLinkInfoKind(kind: string): Buffer {
  if (!/^[a-z0-9_]{1,15}$/.test(kind)) throw new RangeError(`link kind ${JSON.stringify(kind)} is not a kernel kind name`);
  return encodeAttr(IFLA_INFO_KIND, Buffer.from(`${kind}\0`, 'ascii'));
}

/** The kind named in an IFLA_LINKINFO payload, or undefined. */
export function decodeLinkInfoKind(linkinfo: Buffer): string | undefined {
  for (const [type, payload] of decodeAttrs(linkinfo)) {
    if (type !== IFLA_INFO_KIND) continue;
    const nul = payload.indexOf(0);
    return payload.subarray(0, nul === -1 ? payload.length : nul).toString('ascii');
  }
  return undefined;
}

export function ipv4ToBuffer(address: string): Buffer {
  if (!isIPv4(address)) throw new RangeError(`${JSON.stringify(address)} is not an IPv4 address`);
  return Buffer.from(address.split('.').map(Number));
}

export function bufferToIpv4(buf: Buffer): string {
  if (buf.length !== 4) throw new RangeError(`IPv4 address must be 4 bytes, got ${buf.length}`);
  return Array.from(buf).join('.');
}

/** Directed broadcast of address/prefix; undefined for /31 and /32, which have none. */
export function broadcast4(address: string, prefix: number): string | undefined {
  checkPrefix(prefix);
  if (prefix >= 31) return undefined;
  const n = ipv4ToBuffer(address).readUInt32BE(0);
  const host = prefix === 0 ? 0xffffffff : 0xffffffff >>> prefix;
  const out = Buffer.alloc(4);
  out.writeUInt32BE((n | host) >>> 0, 0);
  return bufferToIpv4(out);
}

export function macToBuffer(mac: string): Buffer {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac)) throw new RangeError(`${JSON.stringify(mac)} is not a MAC address`);
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}

export function bufferToMac(buf: Buffer): string {
  return Array.from(buf, (b) => b.toString(16).padStart(2, '0')).join(':');
}

function checkPrefix(prefix: number): void {
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > 32) throw new RangeError(`IPv4 prefix ${prefix} is not 0..32`);
}

/**
 * Why the kernel would refuse `name` as an interface name (dev_valid_name), or
 * treat it as a template: a '%' makes the kernel pick "br0" for "br%d".
 * Returns undefined for a usable name.
 */
export function invalidLinkName(name: string): string | undefined {
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes === 0) return 'is empty';
  if (bytes >= IFNAMSIZ) return `is ${bytes} bytes, the limit is ${IFNAMSIZ - 1}`;
  if (name === '.' || name === '..') return 'is . or ..';
  if (/[/:%\s]/.test(name)) return "contains '/', ':', '%' or whitespace";
  return undefined;
}

/** Convert one parsed RTM_NEWLINK/RTM_DELLINK message; undefined if it lacks index or name. */
export function linkFromMessage(m: rtTypes.LinkMessage): Link | undefined {
  const index = m.data.index;
  const name = m.attrs.ifname;
  if (!index || name === undefined) return undefined;
  const link: Link = { index, name, up: Boolean(m.data.flags?.up), mtu: m.attrs.mtu ?? 0 };
  if (m.attrs.linkinfo) {
    const kind = decodeLinkInfoKind(m.attrs.linkinfo);
    if (kind) link.kind = kind;
  }
  if (m.attrs.master) link.master = m.attrs.master;
  if (m.attrs.address && m.attrs.address.length === 6) link.mac = bufferToMac(m.attrs.address);
  return link;
}

// ---------------------------------------------------------------- socket

export class Rtnl {
  private readonly sock: RtNetlinkSocket;
  private closed = false;
  /**
   * Requests run one at a time: the kernel allows one dump per socket, and the
   * package groups multipart replies without checking sequence numbers.
   */
  /** one request at a time: the kernel allows one dump per socket */
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

  private async call<T>(op: string, object: string, fn: () => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      if (this.closed) throw new NetlinkError(op, object, 'EBADF', { detail: 'rtnetlink socket is closed' });
      try {
        return await fn();
      } catch (err) {
        throw wrapError(op, object, err);
      }
    };
    return this.queue.run(run);
  }

  async listLinks(): Promise<Link[]> {
    const msgs = await this.call('list', 'links', () => this.sock.getLinks({}, {}, { timeout: REQUEST_TIMEOUT_MS }));
    return msgs.map(linkFromMessage).filter((l): l is Link => l !== undefined);
  }

  async getLink(index: number): Promise<Link | undefined> {
    return this.getOne('get link', `ifindex ${index}`, { index }, {});
  }

  async getLinkByName(name: string): Promise<Link | undefined> {
    if (invalidLinkName(name)) return undefined;
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
    const bad = invalidLinkName(name);
    if (bad) throw new NetlinkError(op, JSON.stringify(name), 'EINVAL', { detail: `interface name ${bad}` });
    const attrs: { ifname: string; linkinfo: Buffer; mtu?: number; address?: Buffer } = {
      ifname: name,
      linkinfo: encodeLinkInfoKind('bridge'),
    };
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

  setMtu(index: number, mtu: number): Promise<void> {
    return this.configureLink(index, { mtu });
  }

  /** Enslave `index` to the bridge `masterIndex`; 0 releases it. */
  setMaster(index: number, masterIndex: number): Promise<void> {
    return this.configureLink(index, { master: masterIndex });
  }

  setMac(index: number, mac: string): Promise<void> {
    return this.configureLink(index, { mac });
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
    await this.call(`set ${parts.join(' ')} on`, `ifindex ${index}`, () =>
      this.sock.setLink(data, attrs, { timeout: REQUEST_TIMEOUT_MS }),
    );
  }

  /** Add address/prefix with its broadcast address (none for /31, /32); EEXIST if present. */
  async addAddress4(index: number, address: string, prefix: number): Promise<void> {
    const object = `${address}/${prefix} to ifindex ${index}`;
    const local = toIpv4('add address', object, address, prefix);
    const brd = broadcast4(address, prefix);
    const attrs: rtTypes.AddressAttrs = { local, address: local };
    if (brd) attrs.broadcast = ipv4ToBuffer(brd);
    await this.call('add address', object, () =>
      this.sock.newAddress({ family: AF_INET, prefixlen: prefix, index }, attrs, { flags: CREATE_EXCL, timeout: REQUEST_TIMEOUT_MS }),
    );
  }

  async delAddress4(index: number, address: string, prefix: number): Promise<void> {
    const object = `${address}/${prefix} from ifindex ${index}`;
    const local = toIpv4('delete address', object, address, prefix);
    await this.call('delete address', object, () =>
      this.sock.delAddress({ family: AF_INET, prefixlen: prefix, index }, { local, address: local }, { timeout: REQUEST_TIMEOUT_MS }),
    );
  }

  /** IPv4 addresses, of one link when `index` is given. */
  async listAddresses4(index?: number): Promise<Address4[]> {
    const msgs = await this.call('list', 'IPv4 addresses', () =>
      this.sock.getAddresses({ family: AF_INET }, {}, { timeout: REQUEST_TIMEOUT_MS }),
    );
    const out: Address4[] = [];
    for (const m of msgs) {
      const i = m.data.index;
      const raw = m.attrs.local ?? m.attrs.address;
      if (m.data.family !== AF_INET || i === undefined || !raw || raw.length !== 4) continue;
      if (index !== undefined && i !== index) continue;
      out.push({ index: i, address: bufferToIpv4(raw), prefix: m.data.prefixlen ?? 32 });
    }
    return out;
  }

  /** Routes of the main IPv4 table (what a subnet could collide with). */
  async listRoutes4(): Promise<Route4[]> {
    const msgs = await this.call('list', 'IPv4 routes', () =>
      this.sock.getRoutes({ family: AF_INET }, {}, { timeout: REQUEST_TIMEOUT_MS }),
    );
    const out: Route4[] = [];
    for (const m of msgs) {
      if (m.data.family !== AF_INET) continue;
      if ((m.attrs.table ?? m.data.table) !== RT_TABLE_MAIN) continue;
      const dst = m.attrs.dst && m.attrs.dst.length === 4 ? bufferToIpv4(m.attrs.dst) : '0.0.0.0';
      const route: Route4 = { dst: `${dst}/${m.data.dstLen ?? 0}` };
      if (m.attrs.oif) route.oif = m.attrs.oif;
      out.push(route);
    }
    return out;
  }
}

function toIpv4(op: string, object: string, address: string, prefix: number): Buffer {
  try {
    checkPrefix(prefix);
    return ipv4ToBuffer(address);
  } catch (err) {
    throw new NetlinkError(op, object, 'EINVAL', { cause: err, detail: (err as Error).message });
  }
}
