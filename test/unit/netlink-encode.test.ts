import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ifnameProblem } from '../../src/config/names.js';
import { broadcastOf, fromBytes, parseIfAddress, subnetOf, toBytes } from '../../src/net/ip.js';
import { bufferToMac, decodeAttrs, decodeLinkInfoKind, encodeAttr, encodeLinkInfoKind, linkFromMessage, macToBuffer } from '../../src/netlink/encode.js';
import { decodeIfreqName, encodeIfreq, IFF_NO_PI, IFF_TAP, IFF_VNET_HDR, tapMacFor } from '../../src/netlink/tun.js';
import { errnoOf, NetlinkError, wrapError } from '../../src/netlink/errors.js';

describe('netlink attribute encoding', () => {
  it('encodes IFLA_INFO_KIND "bridge" as the kernel expects: len 11, type 1, NUL-terminated, padded to 12', () => {
    const b = encodeLinkInfoKind('bridge');
    expect(b.toString('hex')).toBe('0b000100' + Buffer.from('bridge\0').toString('hex') + '00');
    expect(b.length).toBe(12);
  });

  it('reads the kind back from a kernel IFLA_LINKINFO payload with nested data after it', () => {
    // shaped like the kernel's: IFLA_INFO_KIND "bridge", then IFLA_INFO_DATA (type 2 with NLA_F_NESTED) holding one u32
    const captured = Buffer.from('0b00010062726964676500000c0002800800010000000000', 'hex');
    expect(decodeLinkInfoKind(captured)).toBe('bridge');
    expect(decodeLinkInfoKind(encodeAttr(2, Buffer.alloc(4)))).toBeUndefined();
  });

  it('round-trips any attribute stream', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 0x3fff }), fc.uint8Array({ maxLength: 40 }))), (attrs) => {
        const stream = Buffer.concat(attrs.map(([t, p]) => encodeAttr(t, Buffer.from(p))));
        expect(stream.length % 4).toBe(0);
        const back = decodeAttrs(stream);
        expect(back.map(([t, p]) => [t, Array.from(p)])).toEqual(attrs.map(([t, p]) => [t, Array.from(p)]));
      }),
    );
  });

  it('refuses a truncated attribute stream instead of reading past it', () => {
    expect(() => decodeAttrs(Buffer.from('0c000100aabb', 'hex'))).toThrow(/malformed/);
    expect(() => encodeLinkInfoKind('bridge\0x')).toThrow(RangeError);
  });
});

describe('addresses', () => {
  it('converts IPv4 and MAC addresses both ways and refuses malformed ones', () => {
    expect(toBytes('192.168.122.1').toString('hex')).toBe('c0a87a01');
    expect(fromBytes(Buffer.from([10, 0, 0, 255]))).toBe('10.0.0.255');
    expect(toBytes('fd00:1::1').toString('hex')).toBe('fd000001000000000000000000000001');
    expect(fromBytes(Buffer.from('fd000001000000000000000000000001', 'hex'))).toBe('fd00:1::1');
    expect(() => toBytes('192.168.122')).toThrow(/not an IP address/);
    expect(() => toBytes('256.1.1.1')).toThrow(/not an IP address/);
    expect(() => fromBytes(Buffer.alloc(5))).toThrow(/4 or 16 bytes/);
    expect(macToBuffer('52:54:00:AB:cd:0f').toString('hex')).toBe('525400abcd0f');
    expect(bufferToMac(Buffer.from('fe0000000001', 'hex'))).toBe('fe:00:00:00:00:01');
    expect(() => macToBuffer('52:54:00:ab:cd')).toThrow(/not a MAC/);
  });

  it('computes the directed broadcast, none for /31 and /32', () => {
    const brd = (cidr: string) => broadcastOf(subnetOf(parseIfAddress(cidr)!));
    expect(brd('192.168.122.1/24')).toBe('192.168.122.255');
    expect(brd('10.2.0.1/20')).toBe('10.2.15.255');
    expect(brd('10.0.0.1/0')).toBe('255.255.255.255');
    expect(brd('10.0.0.1/31')).toBeUndefined();
    expect(brd('10.0.0.1/32')).toBeUndefined();
    expect(brd('fd00::1/64')).toBeUndefined();
    expect(parseIfAddress('10.0.0.1/33')).toBeUndefined();
  });

  it('sets the first MAC byte of a tap to 0xFE and keeps the rest', () => {
    expect(tapMacFor('02:11:22:33:44:55')).toBe('fe:11:22:33:44:55');
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 6, maxLength: 6 }), (bytes) => {
        const mac = tapMacFor(bufferToMac(Buffer.from(bytes)));
        const b = macToBuffer(mac);
        expect(b[0]).toBe(0xfe);
        expect(b.subarray(1)).toEqual(Buffer.from(bytes).subarray(1));
      }),
    );
  });
});

describe('interface names and ifreq', () => {
  it('flags names the kernel refuses or would treat as a template (one validator for every layer)', () => {
    for (const bad of ['', '.', '..', 'a/b', 'a:b', 'a b', 'tap%d', 'x'.repeat(16), 'é'.repeat(8), '-lead'])
      expect(ifnameProblem(bad), bad).toBeDefined();
    for (const good of ['virbr0', 'x'.repeat(15), 'br-office', 'br.5']) expect(ifnameProblem(good), good).toBeUndefined();
  });

  it('lays out struct ifreq: name in 16 bytes, flags as u16 at offset 16, 40 bytes total', () => {
    const b = encodeIfreq('tap%d', IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
    expect(b.length).toBe(40);
    expect(b.subarray(0, 6).toString('latin1')).toBe('tap%d\0');
    expect(b.readUInt16LE(16)).toBe(0x5002);
    b.write('tap12\0', 0, 'ascii');
    expect(decodeIfreqName(b)).toBe('tap12');
    expect(() => encodeIfreq('x'.repeat(16), 0)).toThrow(/limit is 15/);
  });
});

describe('link messages', () => {
  it('builds a Link from a parsed RTM_NEWLINK, leaving out what the kernel did not say', () => {
    const link = linkFromMessage({
      kind: 'link',
      data: { index: 7, flags: { up: true, broadcast: true } },
      attrs: { ifname: 'tap3', mtu: 1400, master: 4, address: Buffer.from('fe5400000001', 'hex'), linkinfo: encodeLinkInfoKind('tun') },
    });
    expect(link).toEqual({ index: 7, name: 'tap3', kind: 'tun', up: true, mtu: 1400, master: 4, mac: 'fe:54:00:00:00:01' });
    expect(linkFromMessage({ kind: 'link', data: { index: 1 }, attrs: { ifname: 'lo', mtu: 65536 } })).toEqual({
      index: 1,
      name: 'lo',
      up: false,
      mtu: 65536,
    });
    expect(linkFromMessage({ kind: 'link', data: {}, attrs: { ifname: 'x' } })).toBeUndefined();
  });
});

describe('errors', () => {
  it('takes the errno from the netlink package rejection and names operation and object', () => {
    const e = wrapError('create bridge', 'virbr0', new Error('Request rejected: EEXIST'));
    expect(e).toBeInstanceOf(NetlinkError);
    expect(e.name).toBe('NetlinkError');
    expect(e.message).toBe('create bridge virbr0: EEXIST');
    expect(e.errno).toBe('EEXIST');
    expect(e.cause).toBeInstanceOf(Error);
    expect(errnoOf(Object.assign(new Error('x'), { code: 'EPERM' }))).toBe('EPERM');
    expect(errnoOf(new Error('Request rejected: 19'))).toBe('ENODEV');
    expect(errnoOf(new Error('Timeout has been reached'))).toBe('ETIMEDOUT');
    expect(wrapError('list', 'links', new Error('weird')).message).toBe('list links: EUNKNOWN (weird)');
  });
});
