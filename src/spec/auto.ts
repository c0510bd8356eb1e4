/**
 * address = "auto" made concrete: once vnetd picked a subnet (runtime/auto-subnets.ts), the spec
 * gets its first address as the bridge's and DHCP from the second to the last but one, as
 * libvirt's default network has them. Pure: desired() never sees an "auto" without its subnet.
 */
import { broadcastOf, cidrOf, offset, parseIfAddress, type Subnet } from '../net/ip.js';
import type { NetworkSpec } from './spec.js';

export function withSubnet(spec: NetworkSpec, subnet: Subnet): NetworkSpec {
  if (!spec.auto) throw new RangeError(`network "${spec.name}" does not have address = "auto"`);
  if (subnet.family !== 4 || subnet.prefix !== spec.auto.prefixLength) throw new RangeError(`network "${spec.name}" wants an IPv4 /${spec.auto.prefixLength}, not ${cidrOf(subnet)}`);
  const address = parseIfAddress(`${offset(subnet.network, 1)}/${subnet.prefix}`)!;
  const last = offset(broadcastOf(subnet)!, -1);
  return {
    ...spec,
    addresses: [address, ...spec.addresses.filter((a) => a.family !== 4)],
    dhcp: { ...spec.dhcp, range4: { start: offset(subnet.network, 2), end: last } },
  };
}
