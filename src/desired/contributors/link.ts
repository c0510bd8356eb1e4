/** The bridge of a network, from its stub on: created by vnet (with a fixed MAC) unless it exists already. */
import { createHash } from 'node:crypto';
import type { Contributor } from '../model.js';

/**
 * A fixed, locally administered MAC per bridge name (52:54:00, as libvirt). Without one a
 * bridge takes the lowest MAC of its ports, and a tap would lend it its fe: address.
 */
export function bridgeMac(bridge: string): string {
  const h = createHash('sha256').update(`vnet:${bridge}`).digest();
  return ['52', '54', '00', ...[h[0]!, h[1]!, h[2]!].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

export const link: Contributor = {
  name: 'link',
  network(n) {
    if (n.level === 'down') return;
    const b = n.spec.bridge;
    n.bridge = { name: b.name, managed: b.managed, mac: bridgeMac(b.name), ...(b.mtu !== undefined ? { mtu: b.mtu } : {}) };
    // no IPv6 address: no link-local one either, nothing for dnsmasq to listen on over IPv6
    if (b.managed && !n.spec.addresses.some((a) => a.family === 6))
      n.linkSysctls.push({ key: `net/ipv6/conf/${b.name}/disable_ipv6`, value: '1' });
    else if (b.managed)
      n.linkSysctls.push(
        // a guest's router advertisement must never give the host a route or an address
        { key: `net/ipv6/conf/${b.name}/accept_ra`, value: '0' },
        // the bridge's addresses are usable at once, without carrier (no port yet) and DAD: dnsmasq binds them
        { key: `net/ipv6/conf/${b.name}/accept_dad`, value: '0' },
      );
  },
};
