/** The bridge's own addresses (both families), only while the network is up. */
import type { Contributor } from '../model.js';

export const addresses: Contributor = {
  name: 'addresses',
  network(n) {
    if (n.level === 'up') n.addresses.push(...n.spec.addresses);
  },
};
