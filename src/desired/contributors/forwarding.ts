/** IPv4 forwarding is on while any network that routes through the host (nat, route, open) is up. */
import { forwards } from '../../spec/spec.js';
import type { Contributor } from '../model.js';

export const FORWARDING_V4 = 'net/ipv4/ip_forward';

export const forwarding: Contributor = {
  name: 'forwarding',
  host(networks, out) {
    if (networks.some((n) => n.level === 'up' && forwards(n.spec))) out.sysctls.push({ key: FORWARDING_V4, value: '1' });
  },
};
