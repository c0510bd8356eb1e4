/**
 * While a network is up with DNS on and a domain, the host's resolver sends names under that
 * domain (and only those) to the network's DNS server on the bridge.
 */
import { wanted } from '../../hostdns/resolved-api.js';
import { primary4 } from '../../spec/spec.js';
import type { Contributor } from '../model.js';

export const hostDns: Contributor = {
  name: 'host-dns',
  network(n) {
    const v4 = primary4(n.spec);
    if (n.level !== 'up' || !n.dhcp || n.spec.dns.off || !n.spec.dns.domain || !v4 || !n.spec.bridge.managed) return;
    n.hostDns = wanted(v4.address, n.spec.dns.domain);
  },
};
