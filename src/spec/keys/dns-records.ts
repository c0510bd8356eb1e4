/**
 * `[[dns-records]]`: extra DNS records the network's server answers, as libvirt's <dns> has them,
 * in the shape `vnet import-libvirt` writes:
 *   { type = "host", ip = "10.0.0.5", names = ["db", "db.lab.test"] }
 *   { type = "srv", service = "ldap", protocol = "tcp", domain = "lab.test", target = "db.lab.test", port = 389, priority = 10, weight = 10 }
 *   { type = "txt", name = "info", value = "lab network" }
 */
import { domainProblem } from '../../config/names.js';
import { canonical, parseAddress } from '../../net/ip.js';
import type { DnsRecord } from '../spec.js';
import { hostNameProblem } from './dns-names.js';
import { int, show, type Section } from './section.js';

const FIELDS: Record<DnsRecord['type'], readonly string[]> = {
  host: ['type', 'ip', 'names'],
  srv: ['type', 'service', 'protocol', 'domain', 'target', 'port', 'priority', 'weight'],
  txt: ['type', 'name', 'value'],
};

/** An SRV record's service name, written as "_NAME" (1-15 letters, digits, "_" or "-", not starting or ending with "-"). */
export const SRV_SERVICE = /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,13}[A-Za-z0-9_])?$/;

/** A TXT record's text: one DNS character-string (at most 255 bytes) of printable ASCII. */
export function txtValueProblem(v: unknown): string | undefined {
  if (typeof v !== 'string' || v.length === 0 || v.length > 255) return 'expected text of 1..255 characters';
  if (!/^[\x20-\x7e]*$/.test(v)) return 'may hold printable ASCII only (no newline, tab or other control character)';
  return undefined;
}

/** A TXT record's owner name: a DNS name whose labels may also hold "_" ("_sip._udp"). */
export function txtNameProblem(v: unknown): string | undefined {
  if (typeof v !== 'string' || v === '' || domainProblem(v.replace(/_/g, 'x'))) return 'is not a DNS name (letters, digits, "-", "_", dot-separated labels)';
  return undefined;
}

/** An SRV record's domain or target: a DNS name, with or without the final dot; a target of "." means "no such service here". */
function srvNameProblem(v: unknown, field: string): string | undefined {
  if (typeof v !== 'string') return 'expected a DNS name';
  if (field === 'target' && v === '.') return undefined;
  return domainProblem(v.replace(/\.$/, ''));
}

function parseRecord(v: unknown, at: string): DnsRecord | string {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return `${at} is not a table; expected e.g. { type = "txt", name = "info", value = "lab network" }`;
  const t = v as Record<string, unknown>;
  const bad = (field: string, problem: string) => `${at}.${field} = ${show(t[field])}: ${problem}`;
  if (t.type !== 'host' && t.type !== 'srv' && t.type !== 'txt') return bad('type', 'expected "host", "srv" or "txt"');
  const type = t.type;
  for (const k of Object.keys(t)) if (!FIELDS[type].includes(k)) return `${at}: unknown field \`${k}\` for type = "${type}"; known fields are ${FIELDS[type].join(', ')}`;
  const missing = (field: string) => `${at}: \`${field}\` is required for type = "${type}"`;
  switch (type) {
    case 'host': {
      if (t.ip === undefined) return missing('ip');
      if (typeof t.ip !== 'string' || !parseAddress(t.ip)) return bad('ip', 'expected an IPv4 or IPv6 address');
      if (t.names === undefined) return missing('names');
      if (!Array.isArray(t.names) || t.names.length === 0) return bad('names', 'expected an array of names, e.g. ["db", "db.lab.test"]');
      for (const n of t.names) {
        const p = hostNameProblem(n);
        if (p) return bad('names', `${show(n)} ${p}`);
      }
      return { type, ip: canonical(t.ip)!, names: [...(t.names as string[])] };
    }
    case 'srv': {
      if (t.service === undefined) return missing('service');
      if (typeof t.service !== 'string' || !SRV_SERVICE.test(t.service)) return bad('service', 'expected 1-15 letters, digits, "_" or "-" (not first or last), e.g. "ldap"');
      if (t.protocol !== 'tcp' && t.protocol !== 'udp') return t.protocol === undefined ? missing('protocol') : bad('protocol', 'expected "tcp" or "udp"');
      const rec: Extract<DnsRecord, { type: 'srv' }> = { type, service: t.service, protocol: t.protocol };
      for (const field of ['domain', 'target'] as const) {
        if (t[field] === undefined) continue;
        const p = srvNameProblem(t[field], field);
        if (p) return bad(field, p);
        rec[field] = t[field] as string;
      }
      for (const field of ['port', 'priority', 'weight'] as const) {
        if (t[field] === undefined) continue;
        const n = int(t[field], 0, 65535);
        if (typeof n === 'string') return bad(field, n);
        rec[field] = n;
      }
      const extra = (['port', 'priority', 'weight'] as const).find((f) => rec[f] !== undefined);
      if (extra && (rec.target === undefined || rec.target === '.')) return bad(extra, 'needs a `target` (the host that offers the service)');
      return rec;
    }
    case 'txt': {
      if (t.name === undefined) return missing('name');
      const np = txtNameProblem(t.name);
      if (np) return bad('name', np);
      if (t.value === undefined) return missing('value');
      const vp = txtValueProblem(t.value);
      if (vp) return bad('value', vp);
      return { type, name: t.name as string, value: t.value as string };
    }
  }
}

export const dnsRecords: Section = {
  keys: {
    'dns-records'(v, s) {
      if (!Array.isArray(v)) return 'expected an array of tables ([[dns-records]] with type = "host", "srv" or "txt")';
      const out: DnsRecord[] = [];
      for (const [i, item] of v.entries()) {
        const r = parseRecord(item, `dns-records[${i}]`);
        if (typeof r === 'string') return r;
        out.push(r);
      }
      s.dns.records = out;
      return undefined;
    },
  },
};
