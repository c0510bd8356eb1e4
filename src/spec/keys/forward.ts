/**
 * `forward`: what vnet forwards for the network, and how; and the NAT options libvirt offers
 * (`nat-interface`, `nat-address`, `nat-ports`), which apply to forward = "nat" only, except
 * `nat-interface`, which also narrows forward = "route" to one uplink (libvirt's `<forward dev>`).
 */
import { ifnameProblem } from '../../config/names.js';
import { compare, isAddress, rangeOf } from '../../net/ip.js';
import type { AddressRange, Forward, ForwardMode, NetworkSpec, PortRange } from '../spec.js';
import { show, type Section } from './section.js';

const MODES: readonly ForwardMode[] = ['nat', 'route', 'isolated', 'open', 'bridge'];
const NAT_KEYS = ['nat-interface', 'nat-address', 'nat-ports'] as const;

/** The NAT options being parsed, when the mode read so far is "nat" (check() refuses them otherwise). */
function natOf(s: NetworkSpec): Extract<Forward, { mode: 'nat' }> | undefined {
  return s.forward.mode === 'nat' ? s.forward : undefined;
}

/** "A-B" (or "A") → [A, B]: the two halves, not yet checked. */
function halves(text: string): [string, string] {
  const dash = text.indexOf('-');
  return dash < 0 ? [text, text] : [text.slice(0, dash), text.slice(dash + 1)];
}

export function parseAddressRange(v: unknown): AddressRange | string {
  const example = 'e.g. "198.51.100.10-198.51.100.20" or "198.51.100.10"';
  if (typeof v !== 'string') return `expected an IPv4 address or range, ${example}`;
  const [start, end] = halves(v);
  for (const a of [start, end]) {
    if (!isAddress(a, 4)) return `${show(a)} is not an IPv4 address; expected ${example}`;
    if (['unspecified', 'loopback', 'multicast', 'broadcast'].includes(rangeOf(a))) return `${a} is a ${rangeOf(a)} address, not usable as a source`;
  }
  if (compare(start, end) > 0) return 'start must not be after end';
  return { start, end };
}

export function parsePortRange(v: unknown): PortRange | string {
  const example = 'e.g. "1024-65535"';
  if (typeof v !== 'string') return `expected a port range, ${example}`;
  const [a, b] = halves(v);
  const port = (t: string) => (/^[1-9][0-9]{0,4}$/.test(t) && Number(t) <= 65535 ? Number(t) : undefined);
  const start = port(a);
  const end = port(b);
  if (start === undefined || end === undefined) return `ports are 1..65535; expected ${example}`;
  if (start > end) return 'start must not be after end';
  return { start, end };
}

export const forward: Section = {
  keys: {
    forward(v, s) {
      if (typeof v !== 'string' || !MODES.includes(v as ForwardMode)) return `expected one of ${MODES.map((m) => `"${m}"`).join(', ')}`;
      const mode = v as ForwardMode;
      // NAT options read before this key stay with "nat"; with another mode check() refuses them
      const via = natOf(s)?.interface;
      if (mode === 'nat') s.forward = natOf(s) ?? { mode: 'nat' };
      else if (mode === 'route') s.forward = { mode, ...(via !== undefined ? { interface: via } : {}) };
      else s.forward = { mode } as Forward;
      // "bridge": a bridge that exists already, NetworkManager's or the admin's; vnet never makes or deletes it
      s.bridge.managed = mode !== 'bridge';
      return undefined;
    },
    'nat-interface'(v, s) {
      const p = ifnameProblem(v);
      if (p) return `interface name ${p}`;
      const nat = natOf(s);
      if (nat) nat.interface = v as string;
      else if (s.forward.mode === 'route') s.forward.interface = v as string;
      return undefined;
    },
    'nat-address'(v, s) {
      const r = parseAddressRange(v);
      if (typeof r === 'string') return r;
      const nat = natOf(s);
      if (nat) nat.address = r;
      return undefined;
    },
    'nat-ports'(v, s) {
      const r = parsePortRange(v);
      if (typeof r === 'string') return r;
      const nat = natOf(s);
      if (nat) nat.ports = r;
      return undefined;
    },
  },
  check(s, fail, has) {
    if (s.forward.mode === 'nat') {
      if (s.forward.interface === s.bridge.name) fail('nat-interface', s.forward.interface, 'is the network\'s own bridge; name the uplink its traffic leaves by');
      return;
    }
    if (s.forward.mode === 'route' && s.forward.interface === s.bridge.name) fail('nat-interface', s.forward.interface, 'is the network\'s own bridge; name the uplink its traffic leaves by');
    for (const key of NAT_KEYS) {
      if (key === 'nat-interface' && s.forward.mode === 'route') continue;
      if (has(key)) fail(key, undefined, `applies only to forward = "nat"${key === 'nat-interface' ? ' and "route"' : ''} (this network has forward = "${s.forward.mode}")`);
    }
  },
};
