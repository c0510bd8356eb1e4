/**
 * dnsmasq configuration for one network: pure text generation, no I/O.
 *
 * The file is passed with --conf-file, which also stops dnsmasq from reading the host's
 * /etc/dnsmasq.conf (and so any conf-dir such as /etc/dnsmasq.d). Every value written is
 * checked again here (defence in depth: definitions arrive validated), because dnsmasq's
 * parser gives meaning to newlines, commas, quotes, backslashes and " #".
 */
import path from 'node:path';
import { prefixToMask as maskOf } from '../net/ip.js';
import { primary4, type NetworkSpec } from '../spec/spec.js';
import { dnsmasqAccount } from './account.js';
import { dnsLines, upstreamOf } from './dnsmasq-dns.js';
import { hostLines, leaseTimeText } from './dnsmasq-hosts.js';
import { dnsmasqV6Lines } from './dnsmasq-v6.js';
import { isServerAddress } from './upstream.js';
import { publicName } from '../usernet/names.js';

/** DHCP lease time written into dhcp-range when the definition gives none (dnsmasq-hosts.ts). */
export { DEFAULT_LEASE_TIME as LEASE_TIME } from './dnsmasq-hosts.js';

export class DnsmasqConfigError extends Error {
  override name = 'DnsmasqConfigError';
  constructor(
    readonly key: string,
    readonly value: unknown,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`dnsmasq config: ${key} ${JSON.stringify(value)} ${reason}`, options);
  }
}

// Characters dnsmasq's option parser treats specially, or that end a line.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
const UNSAFE = /[\s",\\#'`$]/;

function plain(key: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) throw new DnsmasqConfigError(key, value, 'must be a non-empty string');
  if (CONTROL.test(value)) throw new DnsmasqConfigError(key, value, 'contains a newline or control character');
  if (UNSAFE.test(value)) throw new DnsmasqConfigError(key, value, 'contains whitespace, a quote, a comma, "#", "$" or a backslash');
  return value;
}

function ipv4(key: string, value: unknown): string {
  const v = plain(key, value);
  const parts = v.split('.');
  const ok = parts.length === 4 && parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255);
  if (!ok) throw new DnsmasqConfigError(key, value, 'is not a dotted-quad IPv4 address');
  return v;
}

function ifname(key: string, value: unknown): string {
  const v = plain(key, value);
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/.test(v) || v === '.' || v === '..') {
    throw new DnsmasqConfigError(key, value, 'is not an interface name (1-15 of A-Z a-z 0-9 _ . -, no leading "-")');
  }
  return v;
}

function networkName(key: string, value: unknown): string {
  const v = plain(key, value);
  // ":" only as a user network's OWNER:NAME (src/usernet/names.ts)
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_-]*)?$/.test(v) || v.length > 64) {
    throw new DnsmasqConfigError(key, value, 'is not a network name (A-Z a-z 0-9 _ . -, no leading "-" or "."; OWNER:NAME for a user network)');
  }
  return v;
}

function absPath(key: string, value: unknown): string {
  const v = plain(key, value);
  if (!path.isAbsolute(v)) throw new DnsmasqConfigError(key, value, 'is not an absolute path');
  return v;
}

function account(key: string, value: unknown): string {
  const v = plain(key, value);
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(v)) throw new DnsmasqConfigError(key, value, 'is not a user or group name');
  return v;
}

function server(key: string, value: unknown): string {
  const v = plain(key, value);
  if (!isServerAddress(v)) throw new DnsmasqConfigError(key, value, 'is not an IPv4 or IPv6 address (with an optional %interface)');
  return v;
}

function positiveInt(key: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new DnsmasqConfigError(key, value, 'must be a positive integer');
  }
  return value;
}

/** 24 -> "255.255.255.0" */
export function prefixToMask(prefix: number): string {
  try {
    return maskOf(prefix);
  } catch {
    throw new DnsmasqConfigError('ipv4.prefix', prefix, 'must be 0..32');
  }
}

/**
 * The file name of network `name`'s files. A user network's OWNER:NAME is for its owner and root
 * alone, and these names show to every local user (in a listing, in dnsmasq's command line): a
 * hash of it stands in.
 */
function fileStem(name: string): string {
  return publicName(networkName('name', name));
}

/** Where dnsmasq keeps the leases of network `name`. */
export function leaseFilePath(stateDir: string, name: string): string {
  return path.join(absPath('stateDir', stateDir), 'dnsmasq', `${fileStem(name)}.leases`);
}

/** Where vnetd writes the dnsmasq config of network `name`. */
export function confFilePath(runtimeDir: string, name: string): string {
  return path.join(absPath('runtimeDir', runtimeDir), 'dnsmasq', `${fileStem(name)}.conf`);
}

/**
 * The dnsmasq config of one network. `paths.runtimeDir` is accepted for symmetry with
 * confFilePath(). dnsmasq writes nothing outside vnet's folders: its only file is the
 * lease file in `paths.stateDir`, and `pid-file=` (empty) turns off its default
 * /run/dnsmasq.pid, which every network's dnsmasq would otherwise overwrite (and a killed
 * one leave stale): vnetd supervises the child directly. user/group default to vnet's own
 * account (see ./account.ts).
 *
 * Upstream DNS servers come from vnetd (`opts.upstream`, the host's resolv.conf as ./upstream.ts
 * reads it), written as `server=` lines under `no-resolv`: dnsmasq then reads no resolv file and so
 * holds no inotify instance, of which the kernel gives each user only 128 (every vnet dnsmasq runs
 * as the same account).
 */
export function dnsmasqConfig(
  net: NetworkSpec,
  paths: { runtimeDir: string; stateDir: string },
  opts: { user?: string; group?: string; upstream?: readonly string[] } = {},
): string {
  const name = networkName('name', net.name);
  const bridge = ifname('bridge', net.bridge.name);
  const v4 = primary4(net);
  const address = ipv4('ipv4.address', v4?.address);
  const mask = prefixToMask(v4?.prefix ?? -1);
  const user = account('user', opts.user ?? dnsmasqAccount());
  const group = account('group', opts.group ?? opts.user ?? dnsmasqAccount());

  const lines = [
    `# dnsmasq config of vnet network ${name.includes(':') ? fileStem(name) : name}, written by vnetd: edits are overwritten`,
    'strict-order',
    // bind only the bridge's own addresses: no wildcard socket, no answer on lo or the uplink
    'bind-interfaces',
    `interface=${bridge}`,
    'except-interface=lo',
    `listen-address=${address}`,
    // answer from DHCP names and the upstream servers below, never the host's /etc/hosts
    'no-hosts',
    // no resolv file, so no inotify instance to watch it: vnetd gives the servers itself
    'no-resolv',
    ...upstreamOf(net, opts.upstream ?? []).map((a, i) => `server=${server(`upstream[${i}]`, a)}`),
    `user=${user}`,
    `group=${group}`,
    // an empty value: no pid file at all (the default is the host-wide /run/dnsmasq.pid)
    'pid-file=',
    // No line per DHCP packet: a guest sending thousands of DISCOVERs must not fill vnetd's
    // log (errors, such as "no address available", are still logged and rate-limited by the
    // supervisor). The same for DHCPv6 and router advertisements (dnsmasq-v6.ts).
    'quiet-dhcp',
    'quiet-dhcp6',
    'quiet-ra',
  ];
  lines.push(...dnsLines(net));
  if (net.dhcp.range4) {
    const start = ipv4('dhcpRange.start', net.dhcp.range4.start);
    const end = ipv4('dhcpRange.end', net.dhcp.range4.end);
    lines.push(
      `dhcp-range=${start},${end},${mask},${leaseTimeText(net.dhcp.leaseTime)}`,
      'dhcp-no-override',
      'dhcp-authoritative',
      // no ICMP probe before an offer: dnsmasq then needs no CAP_NET_RAW, and offers at once
      'no-ping',
      `dhcp-lease-max=${positiveInt('dhcpLeaseMax', net.dhcp.leaseMax)}`,
      // an isolated network routes nowhere: offer no default route (as libvirt does)
      ...(net.forward.mode === 'isolated' ? ['dhcp-option=option:router'] : []),
      `dhcp-leasefile=${leaseFilePath(paths.stateDir, name)}`,
    );
  }
  lines.push(...hostLines(net));
  lines.push(...dnsmasqV6Lines(net, bridge, () => [`dhcp-lease-max=${positiveInt('dhcpLeaseMax', net.dhcp.leaseMax)}`, `dhcp-leasefile=${leaseFilePath(paths.stateDir, name)}`]));
  return lines.join('\n') + '\n';
}

/** Command line of the supervised dnsmasq: foreground, logging to stderr, only our file. */
export function dnsmasqArgs(confPath: string): string[] {
  return ['--keep-in-foreground', '--log-facility=-', `--conf-file=${absPath('confPath', confPath)}`];
}

/** Command line that only checks the syntax of our file. */
export function dnsmasqTestArgs(confPath: string): string[] {
  return ['--test', `--conf-file=${absPath('confPath', confPath)}`];
}
