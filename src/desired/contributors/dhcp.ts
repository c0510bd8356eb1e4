/**
 * One dnsmasq per network that is up: DHCP (when it has a range) and DNS for its guests, on the
 * bridge's IPv4 address. On a bridge vnet does not own (forward = "bridge") only when the
 * definition asks for DHCP: the guests there may well have a DHCP server of their own.
 */
import { confFilePath, dnsmasqConfig, leaseFilePath } from '../../dhcp/dnsmasq.js';
import { primary4 } from '../../spec/spec.js';
import { UpstreamServers } from '../../dhcp/upstream.js';
import type { Contributor } from '../model.js';

export interface DhcpContext {
  runtimeDir: string;
  stateDir: string;
  user?: string;
  group?: string;
  /** the upstream DNS servers (default: the host's /etc/resolv.conf, read again only when it changed) */
  upstream?: () => readonly string[];
}

export function dhcp(ctx: DhcpContext): Contributor {
  const upstream = ctx.upstream ?? hostUpstream();
  return {
    name: 'dhcp',
    network(n) {
      if (n.level !== 'up' || !primary4(n.spec)) return;
      if (n.spec.forward.mode === 'bridge' && !n.spec.dhcp.range4 && !n.spec.dhcp.range6) return;
      // dns = false and no DHCP: nothing for a dnsmasq to do
      if (n.spec.dns.off && !n.spec.dhcp.range4 && !n.spec.dhcp.range6) return;
      const opts = { ...(ctx.user ? { user: ctx.user } : {}), ...(ctx.group ? { group: ctx.group } : {}), upstream: upstream() };
      n.dhcp = {
        network: n.name,
        text: dnsmasqConfig(n.spec, { runtimeDir: ctx.runtimeDir, stateDir: ctx.stateDir }, opts),
        confPath: confFilePath(ctx.runtimeDir, n.name),
        ...(n.spec.dhcp.range4 || n.spec.dhcp.range6 ? { leaseFile: leaseFilePath(ctx.stateDir, n.name) } : {}),
      };
    },
  };
}

function hostUpstream(): () => readonly string[] {
  const servers = new UpstreamServers();
  return () => servers.current();
}
