/**
 * Forwarding is on while a network that routes through the host (nat, route, open) is up: IPv4
 * for every such network, IPv6 for those with an `address6`.
 *
 * With IPv6 forwarding on, Linux ignores router advertisements on every interface whose
 * accept_ra is 1, and turning it on drops the default routes learnt from them: the host would
 * lose its own IPv6 default route. So every interface with accept_ra = 1 gets 2 (accept RAs even
 * while forwarding) first; the journal keeps the old values, restored with forwarding.
 */
import { forwards, forwards6 } from '../../spec/spec.js';
import type { Contributor } from '../model.js';

export const FORWARDING_V4 = 'net/ipv4/ip_forward';
export const FORWARDING_V6 = 'net/ipv6/conf/all/forwarding';

export const forwarding: Contributor = {
  name: 'forwarding',
  host(networks, out) {
    const up = networks.filter((n) => n.level === 'up');
    if (up.some((n) => forwards(n.spec))) out.sysctls.push({ key: FORWARDING_V4, value: '1' });
    if (up.some((n) => forwards6(n.spec))) {
      // a host that forwarded IPv6 already (a router its admin set up) keeps its accept_ra as it is
      out.interfaceSysctls.push({ name: 'accept_ra', from: '1', value: '2', with: FORWARDING_V6 });
      out.sysctls.push({ key: FORWARDING_V6, value: '1' });
    }
  },
};
