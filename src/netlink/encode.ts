/**
 * Byte encoders the `netlink` package does not provide (IFLA_LINKINFO, MAC buffers) and the
 * conversion of its parsed link messages into vnet's Link. Pure; tested in test/unit.
 */
import type { rt as rtTypes } from 'netlink';

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

const IFLA_INFO_KIND = 1;

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

export function macToBuffer(mac: string): Buffer {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac)) throw new RangeError(`${JSON.stringify(mac)} is not a MAC address`);
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}

export function bufferToMac(buf: Buffer): string {
  return Array.from(buf, (b) => b.toString(16).padStart(2, '0')).join(':');
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
