/** DHCPv4: the address range handed out, the most leases at once and how long a lease lasts. */
import { broadcastOf, canonical, compare, contains, isAddress, subnetOf } from '../../net/ip.js';
import { primary4 } from '../spec.js';
import { parseLeaseTime } from './dns-names.js';
import { int, show, type Section } from './section.js';

export const dhcp: Section = {
  keys: {
    'dhcp-range'(v, s) {
      if (!Array.isArray(v) || v.length !== 2 || typeof v[0] !== 'string' || typeof v[1] !== 'string')
        return 'expected two addresses, e.g. ["192.168.122.2", "192.168.122.254"]';
      const [start, end] = v as [string, string];
      if (!isAddress(start, 4)) return `start ${show(start)} is not an IPv4 address`;
      if (!isAddress(end, 4)) return `end ${show(end)} is not an IPv4 address`;
      if (compare(start, end) > 0) return 'start must not be after end';
      s.dhcp.range4 = { start: canonical(start)!, end: canonical(end)! };
      return undefined;
    },
    'dhcp-lease-max'(v, s) {
      const n = int(v, 1, 65535);
      if (typeof n === 'string') return n;
      s.dhcp.leaseMax = n;
      return undefined;
    },
    'dhcp-lease-time'(v, s) {
      const n = parseLeaseTime(v);
      if (typeof n === 'string') return n;
      s.dhcp.leaseTime = n;
      return undefined;
    },
  },
  check(s, fail) {
    const range = s.dhcp.range4;
    const v4 = primary4(s);
    if (!range) return;
    const shown = [range.start, range.end];
    if (s.auto) fail('dhcp-range', shown, 'with address = "auto" vnet picks the subnet, and the range with it (.2 to the last address); leave dhcp-range out');
    if (!v4) fail('dhcp-range', shown, 'needs `address`: dnsmasq hands out leases from the bridge\'s own IPv4 address');
    const net = subnetOf(v4!);
    if (!contains(net, range.start) || !contains(net, range.end)) fail('dhcp-range', shown, `must lie inside the network ${v4!.cidr} of \`address\``);
    const bcast = broadcastOf(net);
    if (range.start === v4!.network || range.end === bcast)
      fail('dhcp-range', shown, `must not include the network (${v4!.network}) or broadcast (${bcast}) address`);
  },
};
