/**
 * The bridge's own addresses: `address` (IPv4; "auto" lets vnetd pick a free subnet; required
 * except with forward = "bridge", whose bridge may carry its own) and `address6` (one or several IPv6).
 */
import { bridgeAddressProblem, contains, parseIfAddress, subnetOf, type IfAddress } from '../../net/ip.js';
import { show, type Section } from './section.js';

function bridgeAddress(text: unknown, family: 4 | 6, example: string): IfAddress | string {
  if (typeof text !== 'string') return `expected a string such as "${example}"`;
  const a = parseIfAddress(text);
  if (!a || a.family !== family) {
    // "10.1/24" is an address to inet_aton, but not the dotted quad every other tool expects
    if (family === 4 && /^[0-9]+(\.[0-9]+){0,2}\/[0-9]+$/.test(text)) return `expected four decimal parts, e.g. "${example}"`;
    return `expected ${family === 4 ? 'an IPv4' : 'an IPv6'} address with prefix length, e.g. "${example}"`;
  }
  return bridgeAddressProblem(a) ?? a;
}

/** The prefix length of a subnet vnetd picks for address = "auto". */
export const AUTO_PREFIX_LENGTH = 24;

export const addresses: Section = {
  keys: {
    address(v, s) {
      if (v === 'auto') {
        s.auto = { prefixLength: AUTO_PREFIX_LENGTH };
        s.addresses = s.addresses.filter((a) => a.family !== 4);
        return undefined;
      }
      delete s.auto;
      const r = bridgeAddress(v, 4, '192.168.122.1/24');
      if (typeof r === 'string') return r;
      s.addresses = [r, ...s.addresses.filter((a) => a.family !== 4)];
      return undefined;
    },
    address6(v, s) {
      const list = typeof v === 'string' ? [v] : v;
      if (!Array.isArray(list) || list.length === 0) return 'expected an IPv6 address with prefix length, e.g. "fd00:1::1/64", or an array of them';
      const out: IfAddress[] = [];
      for (const item of list) {
        const r = bridgeAddress(item, 6, 'fd00:1::1/64');
        if (typeof r === 'string') return Array.isArray(v) ? `element ${show(item)}: ${r}` : r;
        const clash = out.find((o) => contains(subnetOf(o), r.address) || contains(subnetOf(r), o.address));
        if (clash) return `${r.cidr} overlaps ${clash.cidr}`;
        out.push(r);
      }
      s.addresses = [...s.addresses.filter((a) => a.family !== 6), ...out];
      return undefined;
    },
  },
  check(s, fail, has) {
    const bridgeMode = s.forward.mode === 'bridge';
    if (!has('address') && !bridgeMode) fail('address', undefined, 'is required (an IPv4 address with prefix length such as "10.10.0.1/24", or "auto")');
    if (s.auto && bridgeMode) fail('address', 'auto', 'forward = "bridge" uses a bridge that exists already: give the address it should carry, or none');
  },
};
