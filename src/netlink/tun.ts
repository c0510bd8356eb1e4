/**
 * Taps the way qemu-bridge-helper makes them: /dev/net/tun, TUNSETIFF "tap%d"
 * with IFF_TAP|IFF_NO_PI (+IFF_VNET_HDR when asked and offered), not
 * persistent, so the tap goes away when the last holder of the fd closes it.
 * prepareTap then copies the bridge's MTU, sets the MAC's first byte to 0xFE
 * (so a tap never becomes the bridge's MAC), enslaves and brings it up.
 */
import fs from 'node:fs';
import { NetlinkError, wrapError } from './errors.js';
import { bufferToMac, macToBuffer, type Link, type Rtnl } from './links.js';
import { ioctlBuf, ioctlInt } from '../sys/libc.js';

export const TUNSETIFF = 0x400454ca;
export const TUNSETOWNER = 0x400454cc;
export const TUNSETGROUP = 0x400454ce;
export const TUNGETFEATURES = 0x800454cf;
export const IFF_TAP = 0x0002;
export const IFF_NO_PI = 0x1000;
export const IFF_VNET_HDR = 0x4000;

const IFNAMSIZ = 16;
const IFREQ_SIZE = 40;
const TUN_PATH = '/dev/net/tun';

export interface Tap {
  /** owned by the caller: close it (or hand it off and close it) and the tap disappears */
  fd: number;
  name: string;
  /** true when IFF_VNET_HDR is set on the tap */
  vnetHdr: boolean;
}

export interface OpenTapOptions {
  vnetHdr: boolean;
  ownerUid?: number;
  ownerGid?: number;
}

/** struct ifreq with ifr_name and ifr_flags (the only fields TUNSETIFF reads). */
export function encodeIfreq(name: string, flags: number): Buffer {
  const buf = Buffer.alloc(IFREQ_SIZE);
  const n = Buffer.from(name, 'ascii');
  if (n.length >= IFNAMSIZ) throw new RangeError(`interface name ${JSON.stringify(name)} is ${n.length} bytes, the limit is ${IFNAMSIZ - 1}`);
  n.copy(buf, 0);
  buf.writeUInt16LE(flags, IFNAMSIZ);
  return buf;
}

export function decodeIfreqName(buf: Buffer): string {
  const name = buf.subarray(0, IFNAMSIZ);
  const nul = name.indexOf(0);
  return name.subarray(0, nul === -1 ? IFNAMSIZ : nul).toString('ascii');
}

/** The tap's MAC with its first byte set to 0xFE, as qemu-bridge-helper does. */
export function tapMacFor(mac: string): string {
  const b = macToBuffer(mac);
  b[0] = 0xfe;
  return bufferToMac(b);
}

/** Open a fresh, non-persistent tap. The caller owns the returned fd. */
export function openTap(opts: OpenTapOptions): Tap {
  let fd: number;
  try {
    // libuv opens with O_CLOEXEC, so the fd never leaks into children (dnsmasq, nft)
    fd = fs.openSync(TUN_PATH, fs.constants.O_RDWR);
  } catch (err) {
    throw wrapError('open', TUN_PATH, err);
  }
  try {
    const features = Buffer.alloc(4);
    ioctlBuf(fd, TUNGETFEATURES, features, TUN_PATH);
    const offered = features.readUInt32LE(0);
    const vnetHdr = opts.vnetHdr && (offered & IFF_VNET_HDR) !== 0;
    const ifr = encodeIfreq('tap%d', IFF_TAP | IFF_NO_PI | (vnetHdr ? IFF_VNET_HDR : 0));
    try {
      ioctlBuf(fd, TUNSETIFF, ifr, 'tap%d');
    } catch (err) {
      throw wrapError('create tap', 'tap%d', err);
    }
    const name = decodeIfreqName(ifr);
    if (opts.ownerUid !== undefined) ioctlInt(fd, TUNSETOWNER, opts.ownerUid, `${name} owner ${opts.ownerUid}`);
    if (opts.ownerGid !== undefined) ioctlInt(fd, TUNSETGROUP, opts.ownerGid, `${name} group ${opts.ownerGid}`);
    return { fd, name, vnetHdr };
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}

/**
 * Attach a tap to `bridge`: bridge's MTU, MAC first byte 0xFE, enslaved, up —
 * one RTM_SETLINK. Returns the tap's link as the kernel reports it afterwards.
 */
export async function prepareTap(rtnl: Rtnl, tapName: string, bridge: Link): Promise<Link> {
  const tap = await rtnl.getLinkByName(tapName);
  if (!tap) throw new NetlinkError('put tap', `${tapName} on bridge ${bridge.name}`, 'ENODEV', { detail: 'no such link' });
  const change = { mtu: bridge.mtu, master: bridge.index, up: true, ...(tap.mac ? { mac: tapMacFor(tap.mac) } : {}) };
  try {
    await rtnl.configureLink(tap.index, change);
  } catch (err) {
    throw wrapError('put tap', `${tapName} on bridge ${bridge.name}`, err);
  }
  return { ...tap, ...change, up: true };
}
