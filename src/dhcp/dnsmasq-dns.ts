/**
 * dnsmasq lines of a network's DNS: the domain its guests live in, extra records, forwarders, or
 * no DNS at all (dns = false). Pure text; every value is checked again (./dnsmasq-values.ts).
 *
 * - `domain=D`, `local=/D/` and `expand-hosts`: guests' DHCP names, static hosts and host records
 *   answer as NAME and NAME.D, and names under D that nobody registered are not asked upstream.
 * - `host-record=`, `srv-host=`, `txt-record=`: the records of `[[dns-records]]`.
 * - `server=/D/ADDR`: names under D are asked of ADDR. Forwarders without a domain replace the
 *   host's own upstream servers (as libvirt's do): upstreamLines().
 * - dns = false: `port=0`. dnsmasq then serves DHCP only, and hands out no DNS server option
 *   pointing at itself; the domain is still given to guests by DHCP.
 */
import type { DnsRecord, NetworkSpec } from '../spec/spec.js';
import { DnsmasqConfigError } from './dnsmasq.js';
import { dnsName, hostName, ipAddress, quotedText, uint } from './dnsmasq-values.js';

/** Is the network's DNS server on? */
export function servesDns(net: NetworkSpec): boolean {
  return !net.dns.off;
}

function recordLine(r: DnsRecord, at: string): string {
  switch (r.type) {
    case 'host':
      if (!r.names.length) throw new Error(`${at}: no names`);
      return `host-record=${[...r.names.map((n, i) => hostName(`${at}.names[${i}]`, n)), ipAddress(`${at}.ip`, r.ip)].join(',')}`;
    case 'srv': {
      const service = dnsName(`${at}.service`, `_${r.service}`, { underscore: true });
      if (r.protocol !== 'tcp' && r.protocol !== 'udp') throw new DnsmasqConfigError(`${at}.protocol`, r.protocol, 'is not tcp or udp');
      const proto = r.protocol;
      const domain = r.domain === undefined ? '' : `.${dnsName(`${at}.domain`, r.domain.replace(/\.$/, ''))}`;
      const fields = [`${service}._${proto}${domain}`];
      // no target (or "."): the service is not offered here, and dnsmasq answers just that
      if (r.target !== undefined && r.target !== '.') {
        fields.push(dnsName(`${at}.target`, r.target.replace(/\.$/, '')));
        // positional: a later field needs the earlier ones (dnsmasq's defaults: port 1, priority 0)
        const rest = [r.port, r.priority, r.weight];
        let last = -1;
        rest.forEach((x, i) => x !== undefined && (last = i));
        const defaults = [1, 0, 0];
        for (let i = 0; i <= last; i++) fields.push(String(uint(`${at}.${['port', 'priority', 'weight'][i]}`, rest[i] ?? defaults[i], 65535)));
      }
      return `srv-host=${fields.join(',')}`;
    }
    case 'txt':
      return `txt-record=${dnsName(`${at}.name`, r.name, { underscore: true })},${quotedText(`${at}.value`, r.value)}`;
  }
}

/** The DNS lines of the network (after its listen and upstream lines). */
export function dnsLines(net: NetworkSpec): string[] {
  const domain = net.dns.domain === undefined ? undefined : dnsName('domain', net.dns.domain);
  if (!servesDns(net)) return ['port=0', ...(domain ? [`domain=${domain}`] : [])];
  const lines: string[] = [];
  if (domain) lines.push(`domain=${domain}`, `local=/${domain}/`, 'expand-hosts');
  for (const [i, f] of (net.dns.forwarders ?? []).entries()) {
    if (f.domain === undefined) continue;
    lines.push(`server=/${dnsName(`dns-forwarders[${i}].domain`, f.domain)}/${ipAddress(`dns-forwarders[${i}].addr`, f.addr)}`);
  }
  for (const [i, r] of (net.dns.records ?? []).entries()) lines.push(recordLine(r, `dns-records[${i}]`));
  return lines;
}

/**
 * The servers asked for every other name: the network's own forwarders without a domain when it
 * has any (they replace the host's), else the host's (`upstream`, from its resolv.conf). Checked
 * by dnsmasq.ts's own server() as they are written.
 */
export function upstreamOf(net: NetworkSpec, upstream: readonly string[]): readonly string[] {
  if (!servesDns(net)) return [];
  const own = (net.dns.forwarders ?? []).filter((f) => f.domain === undefined).map((f) => f.addr);
  return own.length ? own : upstream;
}
