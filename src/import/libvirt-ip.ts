/**
 * libvirt's <ip> elements → `address`, `address6`, DHCP ranges, lease time and [[hosts]].
 * vnet carries one IPv4 address per network and DHCP on one address of each family (as
 * libvirt does); the rest is named.
 */
import { hostNameProblem } from '../spec/keys/dns-names.js';
import { compare, contains, isUniqueLocal, parseIfAddress, toBigInt, type IfAddress } from '../net/ip.js';
import { address, leaseSeconds, mac, uint, type Context } from './context.js';
import { show, type Node } from './node.js';
import type { TomlTable, TomlValue } from './toml.js';

/** vnet's own dhcp-lease-max when the key is absent */
const VNET_LEASE_MAX = 253;

/** Prefix of a contiguous IPv4 netmask ("255.255.255.0" → 24), or undefined. */
function maskPrefix(mask: string): number | undefined {
  if (!address(mask, 4)) return undefined;
  const n = toBigInt(mask);
  for (let p = 0; p <= 32; p++) if (n === (((1n << 32n) - 1n) ^ ((1n << BigInt(32 - p)) - 1n))) return p;
  return undefined;
}

/** libvirt's prefix when an IPv4 <ip> has neither netmask nor prefix: the old address class. */
function classfulPrefix(a: string): number | undefined {
  const first = Number(a.split('.')[0]);
  return first < 128 ? 8 : first < 192 ? 16 : first < 224 ? 24 : undefined;
}

interface Host {
  mac?: string;
  name?: string;
  ips: string[];
  lease?: number;
}

export interface IpResult {
  v4?: IfAddress;
  v6: IfAddress[];
}

export function importIps(net: Node, ctx: Context, needsV4: boolean): IpResult {
  const result: IpResult = { v6: [] };
  const hosts: Host[] = [];
  const byMac = new Map<string, Host>();
  const byName = new Map<string, Host>();
  let dhcp4 = false;
  let dhcp6 = false;
  let lease: number | undefined;

  const addHost = (h: Host) => {
    const found = (h.mac && byMac.get(h.mac)) || (h.name && byName.get(h.name));
    // one guest's IPv4 entry (by MAC) and IPv6 entry (by name) become one [[hosts]] table
    if (found && !(found.mac && h.mac && found.mac !== h.mac) && !(found.name && h.name && found.name !== h.name)) {
      found.mac ??= h.mac;
      found.name ??= h.name;
      for (const ip of h.ips) if (!found.ips.includes(ip)) found.ips.push(ip);
      found.lease ??= h.lease;
      if (found.mac) byMac.set(found.mac, found);
      if (found.name) byName.set(found.name, found);
      return;
    }
    hosts.push(h);
    if (h.mac && !byMac.has(h.mac)) byMac.set(h.mac, h);
    if (h.name && !byName.has(h.name)) byName.set(h.name, h);
  };

  const takeLease = (node: Node, where: 'range' | 'host'): number | undefined => {
    const leases = node.children('lease');
    if (!leases.length) return undefined;
    for (const extra of leases.slice(1)) ctx.skip(extra, 'a second <lease>: libvirt reads one');
    const s = leaseSeconds(leases[0]!);
    if (typeof s === 'string') {
      ctx.skip(leases[0]!, s);
      return undefined;
    }
    if (where === 'range' && lease !== undefined && lease !== s) {
      ctx.skip(leases[0]!, `vnet has one lease time per network (\`dhcp-lease-time\` = ${lease} already)`);
      return undefined;
    }
    return s;
  };

  for (const ip of net.children('ip')) {
    const family = ip.attr('family') ?? 'ipv4';
    if (family !== 'ipv4' && family !== 'ipv6') {
      ctx.skip(ip, `family "${show(family)}" is neither ipv4 nor ipv6`);
      continue;
    }
    const fam = family === 'ipv4' ? 4 : 6;
    const addr = address(ip.attr('address'), fam);
    if (addr === undefined) {
      ctx.skip(ip, `address ${ip.has('address') ? `"${show(ip.attr('address')!)}" is not an IPv${fam} address` : 'is missing'}`);
      continue;
    }
    let prefix: number | undefined;
    const netmask = ip.attr('netmask');
    const prefixAttr = ip.attr('prefix');
    if (netmask !== undefined && prefixAttr !== undefined) prefix = undefined;
    else if (netmask !== undefined) prefix = fam === 4 ? maskPrefix(netmask) : undefined;
    else if (prefixAttr !== undefined) prefix = uint(prefixAttr, 0, fam === 4 ? 32 : 128);
    else prefix = fam === 4 ? classfulPrefix(addr) : 64;
    if (prefix === undefined) {
      ctx.skip(ip, netmask !== undefined && prefixAttr !== undefined ? 'has both netmask and prefix' : fam === 6 && netmask !== undefined ? 'netmask is for IPv4; IPv6 takes prefix' : 'netmask or prefix is not valid');
      continue;
    }
    const ifa = parseIfAddress(`${addr}/${prefix}`)!;

    if (fam === 4 && result.v4) {
      ctx.skip(ip, `vnet carries one IPv4 address per network (\`address\` = "${result.v4.address}/${result.v4.prefix}")`);
      continue;
    }
    if (fam === 4) result.v4 = ifa;
    else result.v6.push(ifa);
    ctx.skipAttr(ip, 'localPtr', "vnet's DNS forwards reverse look-ups of the network's own addresses upstream");

    for (const tftp of ip.children('tftp')) ctx.skip(tftp, 'vnet serves no TFTP');
    const dhcps = ip.children('dhcp');
    for (const extra of dhcps.slice(1)) ctx.skip(extra, 'a second <dhcp> in one <ip>');
    const dhcp = dhcps[0];
    if (!dhcp) continue;
    if ((fam === 4 && dhcp4) || (fam === 6 && dhcp6)) {
      ctx.skip(dhcp, `DHCP on a second IPv${fam} address: libvirt and vnet serve one per family`);
      continue;
    }
    if (fam === 4) dhcp4 = true;
    else dhcp6 = true;
    const net6 = { family: ifa.family, network: ifa.network, prefix: ifa.prefix };

    let rangeTaken = false;
    for (const range of dhcp.children('range')) {
      const start = address(range.attr('start'), fam);
      const end = address(range.attr('end'), fam);
      if (rangeTaken) {
        ctx.skip(range, `vnet serves one DHCP range per family (\`${fam === 4 ? 'dhcp-range' : 'dhcp6-range'}\` has the first)`);
        continue;
      }
      if (!start || !end || compare(start, end) > 0 || !contains(net6, start) || !contains(net6, end)) {
        ctx.skip(range, `not a range of IPv${fam} addresses inside ${ifa.cidr}`);
        continue;
      }
      rangeTaken = true;
      ctx.table[fam === 4 ? 'dhcp-range' : 'dhcp6-range'] = [start, end];
      const s = takeLease(range, 'range');
      if (s !== undefined) lease = s;
      if (fam === 4) {
        // libvirt lets dnsmasq hand out the whole range; vnet's default cap is 253
        const size = toBigInt(end) - toBigInt(start) + 1n;
        const max = size > 65535n ? 65535 : Number(size);
        if (max !== VNET_LEASE_MAX) ctx.table['dhcp-lease-max'] = max;
        if (size > 65535n) ctx.notCarried.push({ element: range.where(), reason: `${size} addresses: vnet serves at most 65535 leases at once (\`dhcp-lease-max\`)` });
      }
    }

    for (const host of dhcp.children('host')) {
      const ipText = host.attr('ip');
      const hostIp = address(ipText, fam);
      const hostMac = host.attr('mac');
      const name = host.attr('name');
      const id = host.attr('id');
      if (!hostIp || !contains(net6, hostIp)) {
        ctx.skip(host, ipText === undefined ? 'has no ip' : `ip is not an IPv${fam} address inside ${ifa.cidr}`);
        continue;
      }
      if (hostMac !== undefined && (fam === 6 || !mac(hostMac))) {
        ctx.skip(host, fam === 6 ? 'IPv6 hosts have no mac in libvirt' : 'mac is not a MAC address');
        continue;
      }
      if (name !== undefined && hostNameProblem(name)) {
        ctx.skip(host, `name ${hostNameProblem(name)}`);
        continue;
      }
      if (fam === 4 && !rangeTaken) {
        ctx.skip(host, 'vnet gives fixed IPv4 addresses on a network that has a DHCP <range> (`dhcp-range`) only');
        continue;
      }
      if (hostMac === undefined && name === undefined) {
        ctx.skip(host, id !== undefined ? 'a DHCPv6 client id (DUID) without a name: vnet matches hosts by MAC or name' : 'has neither mac nor name');
        continue;
      }
      if (id !== undefined) ctx.skipAttr(host, 'id', 'vnet matches hosts by MAC or name, not by DHCPv6 client id; the name is carried');
      const hl = takeLease(host, 'host');
      addHost({ ...(hostMac ? { mac: mac(hostMac)! } : {}), ...(name !== undefined ? { name } : {}), ips: [hostIp], ...(hl !== undefined ? { lease: hl } : {}) });
    }
    for (const bootp of dhcp.children('bootp')) ctx.skip(bootp, 'vnet offers no BOOTP/PXE boot options');
  }

  if (result.v4) ctx.table.address = `${result.v4.address}/${result.v4.prefix}`;
  else if (needsV4) ctx.notCarried.push({ element: '<ip family=\'ipv4\'>', reason: 'none: vnet needs one IPv4 address (`address`) on every network it serves' });
  if (result.v6.length === 1) ctx.table.address6 = `${result.v6[0]!.address}/${result.v6[0]!.prefix}`;
  else if (result.v6.length > 1) ctx.table.address6 = result.v6.map((a) => `${a.address}/${a.prefix}`);
  if (lease !== undefined) ctx.table['dhcp-lease-time'] = lease;
  if (hosts.length)
    ctx.table.hosts = hosts.map((h): TomlTable => {
      const t: TomlTable = {};
      if (h.mac) t.mac = h.mac;
      if (h.name !== undefined) t.name = h.name;
      t.ip = h.ips.length === 1 ? h.ips[0]! : (h.ips as TomlValue[]);
      if (h.lease !== undefined) t['dhcp-lease-time'] = h.lease;
      return t;
    });
  return result;
}

/** `<nat ipv6='yes'>` → `nat6 = true`, which vnet offers for unique local addresses only. */
export function importNat6(nat: Node, ips: IpResult, ctx: Context): void {
  const v = nat.attr('ipv6');
  if (v === undefined || v === 'no') return;
  if (v !== 'yes') return ctx.skipAttr(nat, 'ipv6', 'expected yes or no');
  const global = ips.v6.filter((a) => !isUniqueLocal(a.address));
  if (!ips.v6.length) ctx.notCarried.push({ element: "<nat ipv6='yes'>", reason: 'the network has no IPv6 address' });
  else if (global.length) ctx.notCarried.push({ element: "<nat ipv6='yes'>", reason: `vnet offers NAT66 for unique local addresses (fc00::/7) only; ${global.map((a) => a.cidr).join(', ')} is not one` });
  else ctx.table.nat6 = true;
}
