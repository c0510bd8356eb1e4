/**
 * IPv6 beyond the bridge's addresses (`address6`, in addresses.ts): `dhcp6-range` (stateful
 * DHCPv6; absent: router advertisements for SLAAC only) and `nat6` (NAT66, libvirt's
 * `<nat ipv6='yes'>`, offered for unique local prefixes only: a global prefix is routed).
 */
import { canonical, compare, contains, isAddress, isUniqueLocal, subnetOf } from '../../net/ip.js';
import { addressesOf, type NetworkSpec } from '../spec.js';
import { bool, show, type Section } from './section.js';

export const ipv6: Section = {
  keys: {
    'dhcp6-range'(v, s) {
      if (!Array.isArray(v) || v.length !== 2 || typeof v[0] !== 'string' || typeof v[1] !== 'string')
        return 'expected two IPv6 addresses, e.g. ["fd00:1::10", "fd00:1::ff"]';
      const [start, end] = v as [string, string];
      if (!isAddress(start, 6)) return `start ${show(start)} is not an IPv6 address`;
      if (!isAddress(end, 6)) return `end ${show(end)} is not an IPv6 address`;
      if (compare(start, end) > 0) return 'start must not be after end';
      s.dhcp.range6 = { start: canonical(start)!, end: canonical(end)! };
      return undefined;
    },
    nat6(v, s) {
      const b = bool(v);
      if (typeof b === 'string') return b;
      // kept with the NAT options; a mode read later that is not "nat" drops it, and check() refuses the key
      if (s.forward.mode === 'nat') s.forward.nat6 = b;
      return undefined;
    },
  },
  check(s, fail, has) {
    const v6 = addressesOf(s, 6);
    const range = s.dhcp.range6;
    if (range) {
      const shown = [range.start, range.end];
      if (!v6.length) fail('dhcp6-range', shown, 'needs `address6`: dnsmasq hands out DHCPv6 leases from a subnet of the bridge');
      const home = v6.find((a) => contains(subnetOf(a), range.start) && contains(subnetOf(a), range.end));
      if (!home) fail('dhcp6-range', shown, `must lie inside one subnet of \`address6\` (${v6.map((a) => a.cidr).join(', ')})`);
      if (compare(range.start, home!.address) <= 0 && compare(home!.address, range.end) <= 0)
        fail('dhcp6-range', shown, `must not include the bridge's own address ${home!.address}`);
    }
    if (!has('nat6')) return;
    if (s.forward.mode !== 'nat') fail('nat6', undefined, `applies only to forward = "nat" (this network has forward = "${s.forward.mode}")`);
    if (!nat6Of(s)) return;
    if (!v6.length) fail('nat6', true, 'needs `address6`: there is no IPv6 subnet to translate');
    const global = v6.filter((a) => !isUniqueLocal(a.address));
    if (global.length)
      fail('nat6', true, `NAT66 is offered for unique local prefixes (fc00::/7, e.g. fd00:1::1/64) only; ${global.map((a) => `${a.address}/${a.prefix}`).join(', ')} of \`address6\` is not one: route it (leave nat6 out)`);
  },
};

/** Does the network masquerade its IPv6 subnets (NAT66)? */
export function nat6Of(s: NetworkSpec): boolean {
  return s.forward.mode === 'nat' && s.forward.nat6 === true;
}
