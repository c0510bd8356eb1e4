/**
 * One dnsmasq per network that is up: DHCP (when it has a range) and DNS for its guests, on the
 * bridge's IPv4 address. On a bridge vnet does not own (forward = "bridge") only when the
 * definition asks for DHCP: the guests there may well have a DHCP server of their own.
 */
import { confFilePath, dnsmasqConfig, leaseFilePath } from '../../dhcp/dnsmasq.js';
import { primary4 } from '../../spec/spec.js';
import type { Contributor } from '../model.js';

export interface DhcpContext {
  runtimeDir: string;
  stateDir: string;
  user?: string;
  group?: string;
}

export function dhcp(ctx: DhcpContext): Contributor {
  return {
    name: 'dhcp',
    network(n) {
      if (n.level !== 'up' || !primary4(n.spec)) return;
      if (n.spec.forward.mode === 'bridge' && !n.spec.dhcp.range4) return;
      const opts = { ...(ctx.user ? { user: ctx.user } : {}), ...(ctx.group ? { group: ctx.group } : {}) };
      n.dhcp = {
        network: n.name,
        text: dnsmasqConfig(n.spec, { runtimeDir: ctx.runtimeDir, stateDir: ctx.stateDir }, opts),
        confPath: confFilePath(ctx.runtimeDir, n.name),
        ...(n.spec.dhcp.range4 ? { leaseFile: leaseFilePath(ctx.stateDir, n.name) } : {}),
      };
    },
  };
}
