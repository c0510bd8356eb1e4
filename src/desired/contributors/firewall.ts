/** The network's chains and map entries in vnet's table, by forward mode, while it is up. */
import { firewallPart } from '../../firewall/rules.js';
import type { Contributor } from '../model.js';

export const firewall: Contributor = {
  name: 'firewall',
  network(n) {
    if (n.level !== 'up') return;
    const part = firewallPart(n.spec);
    if (part) n.firewall = part;
  },
};

/**
 * While up, other firewalls on the host let the bridge through; "open" asks nothing of anyone, and
 * a bridge vnet does not own ("bridge") is its owner's to place in a zone.
 */
export const hostFirewall: Contributor = {
  name: 'host-firewall',
  network(n) {
    n.hostFirewall = n.level === 'up' && n.spec.forward.mode !== 'open' && n.spec.forward.mode !== 'bridge';
  },
};
