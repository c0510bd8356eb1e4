/**
 * libvirt's <dns> → `dns = false`, `dns-forwarders` and [[dns-records]] (host, srv, txt).
 *
 * `dns-forwarders` is an array of tables, `{ addr = "8.8.4.4", domain = "example.com" }`,
 * because libvirt's <forwarder> has two independent attributes; forwarder() below is the one
 * place that decides that form.
 */
import { domainProblem } from '../config/names.js';
import { hostNameProblem } from '../spec/keys/dns-names.js';
import { SRV_SERVICE, txtValueProblem } from '../spec/keys/dns-records.js';
import { address, uint, type Context } from './context.js';
import { show, type Node } from './node.js';
import type { TomlTable } from './toml.js';

function anyAddress(text: string | undefined): string | undefined {
  return address(text, 4) ?? address(text, 6);
}

/** One <forwarder> as it is written in `dns-forwarders`. */
function forwarder(addr: string, domain: string | undefined): TomlTable {
  return domain === undefined ? { addr } : { addr, domain };
}

export function importDns(net: Node, ctx: Context): void {
  const all = net.children('dns');
  for (const extra of all.slice(1)) ctx.skip(extra, 'a second <dns>: libvirt reads one');
  const dns = all[0];
  if (!dns) return;
  const enable = dns.attr('enable');
  if (enable === 'no') {
    ctx.table.dns = false;
    for (const name of new Set(dns.el.children.map((c) => c.name))) for (const c of dns.children(name)) ctx.skip(c, 'DNS is off: libvirt ignores this too');
    dns.attr('forwardPlainNames');
    return;
  }
  if (enable !== undefined && enable !== 'yes') ctx.skipAttr(dns, 'enable', 'expected yes or no');
  if (dns.attr('forwardPlainNames') === 'no') ctx.notCarried.push({ element: "<dns forwardPlainNames='no'>", reason: "vnet's DNS forwards names without a dot upstream too" });

  const forwarders: TomlTable[] = [];
  for (const f of dns.children('forwarder')) {
    const addrText = f.attr('addr');
    const domain = f.attr('domain');
    if (addrText === undefined) {
      ctx.skip(f, domain === undefined ? 'neither addr nor domain' : 'a domain resolved locally, without a server to forward to: `dns-forwarders` takes an address');
      continue;
    }
    const addr = anyAddress(addrText);
    if (!addr) ctx.skip(f, 'addr is not an IP address');
    else if (domain !== undefined && domainProblem(domain)) ctx.skip(f, `domain ${domainProblem(domain)}`);
    else forwarders.push(forwarder(addr, domain));
  }
  if (forwarders.length) ctx.table['dns-forwarders'] = forwarders;

  const records: TomlTable[] = [];
  for (const h of dns.children('host')) {
    const ip = anyAddress(h.attr('ip'));
    const names = h.children('hostname').map((n) => n.el.text);
    const bad = names.find((n) => hostNameProblem(n));
    if (!ip) ctx.skip(h, 'ip is not an IP address');
    else if (!names.length) ctx.skip(h, 'has no <hostname>');
    else if (bad !== undefined) ctx.skip(h, `hostname "${show(bad)}" ${hostNameProblem(bad)}`);
    else records.push({ type: 'host', ip, names });
  }
  for (const s of dns.children('srv')) {
    const service = s.attr('service');
    const protocol = s.attr('protocol');
    const rec: TomlTable = { type: 'srv' };
    if (service === undefined || !SRV_SERVICE.test(service)) {
      ctx.skip(s, 'service is missing or not 1-15 letters, digits, "_" or "-" (not first or last)');
      continue;
    }
    if (protocol !== 'tcp' && protocol !== 'udp') {
      ctx.skip(s, 'protocol is not tcp or udp');
      continue;
    }
    rec.service = service;
    rec.protocol = protocol;
    let ok = true;
    for (const k of ['domain', 'target'] as const) {
      const v = s.attr(k);
      // target "." means "no such service here" (RFC 2782)
      if (v !== undefined && v !== '.' && domainProblem(v.replace(/\.$/, ''))) ok = false;
      else if (v !== undefined) rec[k] = v;
    }
    for (const [k, max] of [['port', 65535], ['priority', 65535], ['weight', 65535]] as const) {
      const v = s.attr(k);
      const n = uint(v, 0, max);
      if (v !== undefined && n === undefined) ok = false;
      else if (n !== undefined) rec[k] = n;
    }
    const needsTarget = (rec.port ?? rec.priority ?? rec.weight) !== undefined && (rec.target === undefined || rec.target === '.');
    if (ok && needsTarget) ctx.skip(s, 'port, priority or weight without a target');
    else if (ok) records.push(rec);
    else ctx.skip(s, 'domain or target is not a DNS name, or port, priority or weight is not 0..65535');
  }
  for (const t of dns.children('txt')) {
    const name = t.attr('name');
    const value = t.attr('value');
    if (name === undefined || value === undefined) ctx.skip(t, 'name and value are both required');
    else if (/[\s,]/.test(name) || name === '' || domainProblem(name.replace(/_/g, 'x'))) ctx.skip(t, 'name is not a DNS name');
    else if (txtValueProblem(value)) ctx.skip(t, `value ${txtValueProblem(value)}`);
    else records.push({ type: 'txt', name, value });
  }
  if (records.length) ctx.table['dns-records'] = records;
}
