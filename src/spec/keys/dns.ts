/**
 * DNS for guests: the domain they live in, `dns = false` to serve no DNS at all (DHCP still runs),
 * and `dns-forwarders`: upstream servers, each for every name or (with `domain`) for one domain,
 * as `{ addr = "192.0.2.53", domain = "corp.example" }`, the shape `vnet import-libvirt` writes
 * from libvirt's <forwarder addr domain>.
 */
import { domainProblem } from '../../config/names.js';
import { canonical, parseAddress, rangeOf } from '../../net/ip.js';
import type { DnsForwarder } from '../spec.js';
import { bool, show, type Section } from './section.js';

const EXAMPLE = 'dns-forwarders = [{ addr = "192.0.2.53" }, { addr = "192.0.2.54", domain = "corp.example" }]';

function parseForwarder(v: unknown, at: string): DnsForwarder | string {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return `${at} is not a table; expected ${EXAMPLE}`;
  const t = v as Record<string, unknown>;
  for (const k of Object.keys(t)) if (k !== 'addr' && k !== 'domain') return `${at}: unknown field \`${k}\`; known fields are addr, domain`;
  const p = typeof t.addr === 'string' ? parseAddress(t.addr) : undefined;
  if (!p) return `${at}.addr = ${show(t.addr)}: expected an IPv4 or IPv6 address`;
  const range = rangeOf(t.addr as string);
  if (['unspecified', 'multicast', 'broadcast'].includes(range)) return `${at}.addr = ${show(t.addr)}: a ${range} address is no DNS server`;
  const out: DnsForwarder = { addr: canonical(t.addr as string)! };
  if (t.domain !== undefined) {
    const dp = domainProblem(t.domain);
    if (dp) return `${at}.domain = ${show(t.domain)}: ${dp}`;
    out.domain = t.domain as string;
  }
  return out;
}

export const dns: Section = {
  keys: {
    domain(v, s) {
      const p = domainProblem(v);
      if (p) return p;
      s.dns.domain = v as string;
      return undefined;
    },
    dns(v, s) {
      const b = bool(v);
      if (typeof b === 'string') return `${b} (false: no DNS server on the network; DHCP still runs)`;
      if (b) delete s.dns.off;
      else s.dns.off = true;
      return undefined;
    },
    'dns-forwarders'(v, s) {
      if (!Array.isArray(v)) return `expected an array of tables, ${EXAMPLE}`;
      const out: DnsForwarder[] = [];
      for (const [i, item] of v.entries()) {
        const f = parseForwarder(item, `dns-forwarders[${i}]`);
        if (typeof f === 'string') return f;
        if (out.some((o) => o.addr === f.addr && o.domain === f.domain)) return `dns-forwarders[${i}] repeats ${show(item)}`;
        out.push(f);
      }
      s.dns.forwarders = out;
      return undefined;
    },
  },
  check(s, fail, has) {
    for (const [i, f] of (s.dns.forwarders ?? []).entries())
      if (s.addresses.some((a) => a.address === f.addr)) fail(`dns-forwarders[${i}].addr`, f.addr, "is the network's own DNS server: it would ask itself");
    if (!s.dns.off) return;
    for (const key of ['dns-forwarders', 'dns-records']) if (has(key)) fail(key, undefined, 'has no server to answer with: the network has dns = false');
  },
};
