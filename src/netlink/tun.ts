/**
 * Taps the way qemu-bridge-helper makes them: /dev/net/tun, TUNSETIFF "tap%d"
 * with IFF_TAP|IFF_NO_PI (+IFF_VNET_HDR when asked and offered), not
 * persistent, so the tap goes away when the last holder of the fd closes it.
 * attachTap then copies the bridge's MTU, sets the MAC's first byte to 0xFE
 * (so a tap never becomes the bridge's MAC), enslaves and brings it up.
 *
 * Both are synchronous on purpose: they are the hot path of a VM start (the tap
 * hand-off), and a handful of interface ioctls costs tens of microseconds where
 * each rtnetlink round trip through the event loop costs hundreds, during which
 * the loop also parses every link notification the new tap causes.
 */
import fs from 'node:fs';
import { NetlinkError, wrapError } from './errors.js';
import { bufferToMac, macToBuffer, type Link } from './encode.js';
import { closeFd, ioctlBuf, ioctlInt, socket, SOCK_CLOEXEC, SOCK_DGRAM } from '../sys/libc.js';

export const TUNSETIFF = 0x400454ca;
export const TUNSETOWNER = 0x400454cc;
export const TUNSETGROUP = 0x400454ce;
export const TUNGETFEATURES = 0x800454cf;
export const IFF_TAP = 0x0002;
export const IFF_NO_PI = 0x1000;
export const IFF_VNET_HDR = 0x4000;

// interface ioctls (linux/sockios.h), answered on any socket of the namespace
export const SIOCGIFFLAGS = 0x8913;
export const SIOCSIFFLAGS = 0x8914;
export const SIOCGIFMTU = 0x8921;
export const SIOCSIFMTU = 0x8922;
export const SIOCSIFHWADDR = 0x8924;
export const SIOCGIFHWADDR = 0x8927;
export const SIOCGIFINDEX = 0x8933;
export const SIOCBRADDIF = 0x89a2;
const IFF_UP = 0x1;
const AF_INET = 2;

const IFNAMSIZ = 16;
const IFREQ_SIZE = 40;
/** offset of the ifreq union (ifr_mtu, ifr_ifindex, ifr_flags, ifr_hwaddr) */
const IFR_DATA = IFNAMSIZ;
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


/** A close-on-exec AF_INET datagram socket: the handle interface ioctls go through. */
function controlSocket(op: string, object: string): number {
  try {
    return socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  } catch (err) {
    throw wrapError(op, object, err);
  }
}

/** An ifreq naming `name`, with `value` as its int (ifr_mtu / ifr_ifindex / ifr_flags) when given. */
function ifreqFor(name: string, value?: number): Buffer {
  const ifr = encodeIfreq(name, 0);
  if (value !== undefined) ifr.writeInt32LE(value, IFR_DATA);
  return ifr;
}

/**
 * Put the open tap `tapName` on `bridge`, as qemu-bridge-helper does and with the same
 * interface ioctls: the bridge's MTU, the tap's MAC with its first byte set to 0xFE,
 * enslaved (SIOCBRADDIF), up. Synchronous. Fails with ENODEV when there is no `bridge`
 * (before touching the tap) and with EOPNOTSUPP when it is not a bridge; the caller
 * then closes the tap fd, which removes the tap. Returns the tap as it now is.
 */
export function attachTap(tapName: string, bridge: string): Link {
  const op = 'put tap';
  const object = `${tapName} on bridge ${bridge}`;
  const sock = controlSocket(op, object);
  const step = (what: string, request: number, ifr: Buffer): Buffer => {
    try {
      ioctlBuf(sock, request, ifr, what);
      return ifr;
    } catch (err) {
      const errno = (err as NetlinkError).errno ?? 'EUNKNOWN';
      const why =
        errno === 'EOPNOTSUPP' && request === SIOCBRADDIF
          ? `${bridge} is not a bridge`
          : errno === 'ENODEV'
            ? `${what}: no interface named ${decodeIfreqName(ifr)}`
            : what;
      throw new NetlinkError(op, object, errno, { cause: err, detail: why });
    }
  };
  try {
    const mtu = step(`SIOCGIFMTU ${bridge}`, SIOCGIFMTU, ifreqFor(bridge)).readInt32LE(IFR_DATA);
    const master = step(`SIOCGIFINDEX ${bridge}`, SIOCGIFINDEX, ifreqFor(bridge)).readInt32LE(IFR_DATA);
    step(`SIOCSIFMTU ${tapName} ${mtu}`, SIOCSIFMTU, ifreqFor(tapName, mtu));
    // ifr_hwaddr is a sockaddr: sa_family (u16), then the 6 address bytes
    const hw = step(`SIOCGIFHWADDR ${tapName}`, SIOCGIFHWADDR, ifreqFor(tapName));
    const mac = tapMacFor(bufferToMac(hw.subarray(IFR_DATA + 2, IFR_DATA + 8)));
    macToBuffer(mac).copy(hw, IFR_DATA + 2);
    step(`SIOCSIFHWADDR ${tapName} ${mac}`, SIOCSIFHWADDR, hw);
    const index = step(`SIOCGIFINDEX ${tapName}`, SIOCGIFINDEX, ifreqFor(tapName)).readInt32LE(IFR_DATA);
    step(`SIOCBRADDIF ${bridge} ${tapName}`, SIOCBRADDIF, ifreqFor(bridge, index));
    const flags = step(`SIOCGIFFLAGS ${tapName}`, SIOCGIFFLAGS, ifreqFor(tapName)).readUInt16LE(IFR_DATA);
    step(`SIOCSIFFLAGS ${tapName} up`, SIOCSIFFLAGS, ifreqFor(tapName, flags | IFF_UP));
    return { index, name: tapName, kind: 'tun', up: true, mtu, master, mac };
  } finally {
    closeFd(sock);
  }
}
