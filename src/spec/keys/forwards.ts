/**
 * `[[forwards]]`: host ports forwarded to guests (DNAT), one table each:
 *
 *   [[forwards]]
 *   proto = "tcp"          # "tcp" or "udp"
 *   host-port = 8080       # the port on the host's addresses (all but loopback)
 *   guest = "10.0.0.5"     # an IPv4 address in the network, or a [[hosts]] name
 *   guest-port = 80        # optional: the host port
 *
 * Checked once every key is read (the subnet and the static hosts are known then).
 */
import { describeForward, guestAddress, isProto, MAX_FORWARDS_PER_NETWORK, modeProblem, portOf } from '../port-forwards.js';
import type { PortForward } from '../spec.js';
import { show, type Section } from './section.js';

const FIELDS = ['proto', 'host-port', 'guest', 'guest-port'];
const EXAMPLE = '[[forwards]] tables, e.g. proto = "tcp", host-port = 8080, guest = "192.168.122.10", guest-port = 80';

function one(t: unknown, i: number): PortForward | string {
  const at = `forward #${i + 1}`;
  if (typeof t !== 'object' || t === null || Array.isArray(t)) return `${at} is not a table; expected ${EXAMPLE}`;
  const o = t as Record<string, unknown>;
  const unknown = Object.keys(o).find((k) => !FIELDS.includes(k));
  if (unknown !== undefined) return `${at}: unknown key \`${unknown}\`; known keys are ${FIELDS.join(', ')}`;
  if (!isProto(o.proto)) return `${at}: \`proto\` = ${show(o.proto)}: expected "tcp" or "udp"`;
  const hostPort = portOf(o['host-port']);
  if (hostPort === undefined || typeof o['host-port'] === 'string') return `${at}: \`host-port\` = ${show(o['host-port'])}: expected a port 1..65535`;
  if (typeof o.guest !== 'string' || o.guest === '') return `${at}: \`guest\` = ${show(o.guest)}: expected an IPv4 address in the network or a [[hosts]] name`;
  const gp = o['guest-port'];
  const guestPort = gp === undefined ? hostPort : portOf(gp);
  if (guestPort === undefined || typeof gp === 'string') return `${at}: \`guest-port\` = ${show(gp)}: expected a port 1..65535`;
  return { proto: o.proto, hostPort, guest: o.guest, guestPort, origin: 'definition' };
}

export const forwards: Section = {
  keys: {
    forwards(v, s) {
      if (!Array.isArray(v)) return `expected ${EXAMPLE}`;
      if (v.length > MAX_FORWARDS_PER_NETWORK) return `${v.length} forwards; a network has at most ${MAX_FORWARDS_PER_NETWORK}`;
      const out: PortForward[] = [];
      for (const [i, t] of v.entries()) {
        const f = one(t, i);
        if (typeof f === 'string') return f;
        const twin = out.find((x) => x.proto === f.proto && x.hostPort === f.hostPort);
        if (twin) return `${f.proto} host port ${f.hostPort} is forwarded twice (${describeForward(twin)} and ${describeForward(f)})`;
        out.push(f);
      }
      s.portForwards = out;
      return undefined;
    },
  },
  check(s, fail) {
    const list = s.portForwards ?? [];
    if (list.length === 0) return;
    const shown = list.map(describeForward);
    const mode = modeProblem(s);
    if (mode) fail('forwards', shown, mode);
    for (const f of list) {
      // address = "auto": the subnet is vnetd's pick, unknown here; the rules take only guests inside it
      if (s.auto) continue;
      const where = guestAddress(s, f.guest);
      if ('problem' in where) fail('forwards', describeForward(f), where.problem);
    }
  },
};
