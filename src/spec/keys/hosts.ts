/**
 * `[[hosts]]`: guests known in advance, each with `mac` and/or `name`, a fixed `ip` (one address,
 * or an array of an IPv4 and an IPv6 one) and optionally its own `dhcp-lease-time`. The shape of
 * each entry is checked as it is read; whether its addresses lie in the network and whether two
 * entries collide is checked once every key is read (the addresses may come later in the file).
 */
import { broadcastOf, canonical, contains, parseAddress, subnetOf } from '../../net/ip.js';
import { addressesOf, type NetworkSpec, type StaticHost } from '../spec.js';
import { hostNameProblem, parseLeaseTime, parseMac } from './dns-names.js';
import { show, type Section } from './section.js';

const FIELDS = ['mac', 'name', 'ip', 'dhcp-lease-time'];
const EXAMPLE = '[[hosts]] with mac = "52:54:00:12:34:56", ip = "192.168.122.10", name = "web"';

function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** One entry → a StaticHost, or the problem, naming the field (`hosts[2].mac = "zz": ...`). */
function parseHost(v: unknown, at: string): StaticHost | string {
  if (!isTable(v)) return `${at} is not a table; expected ${EXAMPLE}`;
  const bad = (field: string, value: unknown, problem: string) => `${at}.${field} = ${show(value)}: ${problem}`;
  for (const k of Object.keys(v)) if (!FIELDS.includes(k)) return `${at}: unknown field \`${k}\`; known fields are ${FIELDS.join(', ')}`;
  const host: StaticHost = { ips: [] };
  if (v.mac !== undefined) {
    const m = parseMac(v.mac);
    if (typeof m !== 'string') return bad('mac', v.mac, m.problem);
    host.mac = m;
  }
  if (v.name !== undefined) {
    const p = hostNameProblem(v.name);
    if (p) return bad('name', v.name, p);
    host.name = v.name as string;
  }
  if (v.ip === undefined) return `${at}: \`ip\` is required (an address, or an array of an IPv4 and an IPv6 address)`;
  const list = typeof v.ip === 'string' ? [v.ip] : v.ip;
  if (!Array.isArray(list) || list.length === 0 || list.length > 2) return bad('ip', v.ip, 'expected an address, or an array of an IPv4 and an IPv6 address');
  for (const ip of list) {
    const p = typeof ip === 'string' ? parseAddress(ip) : undefined;
    if (!p) return bad('ip', v.ip, `${show(ip)} is not an IPv4 or IPv6 address`);
    if (host.ips.some((o) => parseAddress(o)!.family === p.family)) return bad('ip', v.ip, `two IPv${p.family} addresses: a host has at most one of each family`);
    host.ips.push(canonical(ip as string)!);
  }
  if (v['dhcp-lease-time'] !== undefined) {
    const n = parseLeaseTime(v['dhcp-lease-time']);
    if (typeof n === 'string') return bad('dhcp-lease-time', v['dhcp-lease-time'], n);
    host.leaseTime = n;
  }
  if (!host.mac && !host.name) return `${at}: needs \`mac\` or \`name\` (or both): DHCP knows a guest by its MAC address or by the name it sends`;
  return host;
}

/** Why `ip` cannot be a host's address in this network, or undefined. */
function placeProblem(spec: NetworkSpec, ip: string): string | undefined {
  const family = parseAddress(ip)!.family;
  const own = addressesOf(spec, family);
  if (own.length === 0) {
    if (family === 4 && spec.auto) return 'with address = "auto" vnet picks the subnet: a fixed address cannot be known in advance';
    return `the network has no IPv${family} address (\`${family === 4 ? 'address' : 'address6'}\`)`;
  }
  const inside = own.find((a) => contains(subnetOf(a), ip));
  if (!inside) return `lies outside the network (${own.map((a) => `${a.address}/${a.prefix}`).join(', ')})`;
  if (ip === inside.address) return `is the bridge's own address`;
  if (ip === inside.network) return `is the network address of ${inside.cidr}`;
  if (family === 4 && ip === broadcastOf(subnetOf(inside))) return `is the broadcast address of ${inside.cidr}`;
  return undefined;
}

export const hosts: Section = {
  keys: {
    hosts(v, s) {
      if (!Array.isArray(v)) return `expected an array of tables, ${EXAMPLE}`;
      const out: StaticHost[] = [];
      for (const [i, item] of v.entries()) {
        const h = parseHost(item, `hosts[${i}]`);
        if (typeof h === 'string') return h;
        out.push(h);
      }
      s.dhcp.hosts = out;
      return undefined;
    },
  },
  check(s, fail) {
    const list = s.dhcp.hosts ?? [];
    const seen = new Map<string, number>();
    const once = (i: number, field: string, value: string, kind: string) => {
      const key = `${kind}:${value.toLowerCase()}`;
      const first = seen.get(key);
      if (first !== undefined) fail(`hosts[${i}].${field}`, value, `is hosts[${first}]'s ${field} too; each ${field} belongs to one host`);
      seen.set(key, i);
    };
    for (const [i, h] of list.entries()) {
      for (const ip of h.ips) {
        const p = placeProblem(s, ip);
        if (p) fail(`hosts[${i}].ip`, ip, p);
        if (parseAddress(ip)!.family === 4 && !s.dhcp.range4 && !s.auto) fail(`hosts[${i}].ip`, ip, 'the network hands out no IPv4 leases: give it a `dhcp-range` (the fixed addresses may lie outside it)');
        once(i, 'ip', ip, 'ip');
      }
      if (h.mac) once(i, 'mac', h.mac, 'mac');
      if (h.name) once(i, 'name', h.name, 'name');
    }
  },
};
