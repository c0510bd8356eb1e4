/**
 * The nft JSON vnet writes, built from typed pieces (never rule strings), in exactly the form
 * `nft -j list` prints it back, so that what the kernel holds can be compared with what vnet
 * wants by content. Every name and address goes in as a JSON value.
 */

export type MetaKey = 'iifname' | 'oifname' | 'l4proto' | 'nfproto';
export type Payload = { payload: { protocol: 'ip' | 'ip6' | 'tcp' | 'udp'; field: 'saddr' | 'daddr' | 'dport' } };
export type Left = { meta: { key: MetaKey } } | Payload | { ct: { key: 'state' | 'status' } } | { fib: { result: 'type'; flags: ['daddr'] } };
export type Prefix = { prefix: { addr: string; len: number } };
export type Right = string | number | string[] | Prefix | { range: [string, string] };

export type Statement =
  | { match: { op: '==' | '!=' | 'in'; left: Left; right: Right } }
  | { accept: null }
  | { return: null }
  | { reject: { type: 'icmpx'; expr: 'port-unreachable' } }
  | { masquerade: null | { port: { range: [number, number] } } }
  /** `snat ip to ADDR[-ADDR][:PORT-PORT]`; nft lists one address as a string, a range as `range` */
  | { snat: { family: 'ip'; addr: string | { range: [string, string] }; port?: { range: [number, number] } } }
  /** `dnat ip to ADDR:PORT` */
  | { dnat: { family: 'ip'; addr: string; port: number } }
  | { vmap: { key: Left; data: string } }
  | { jump: { target: string } };

/** One rule: its statements in order. */
export type Rule = Statement[];

export const meta = (key: MetaKey): Left => ({ meta: { key } });
export const addr = (family: 4 | 6, field: 'saddr' | 'daddr'): Left => ({ payload: { protocol: family === 4 ? 'ip' : 'ip6', field } });
export const dport = (protocol: 'tcp' | 'udp'): Left => ({ payload: { protocol, field: 'dport' } });
export const eq = (left: Left, right: Right): Statement => ({ match: { op: '==', left, right } });
export const ne = (left: Left, right: Right): Statement => ({ match: { op: '!=', left, right } });
export const prefix = (address: string, len: number): Prefix => ({ prefix: { addr: address, len } });
export const established = (): Statement => ({ match: { op: 'in', left: { ct: { key: 'state' } }, right: ['established', 'related'] } });
/** `ct status dnat`: a connection a DNAT rule translated (a port forward) */
export const dnatted = (): Statement => ({ match: { op: 'in', left: { ct: { key: 'status' } }, right: 'dnat' } });
/** `fib daddr type local`: addressed to one of the host's own addresses */
export const localDaddr = (): Statement => ({ match: { op: '==', left: { fib: { result: 'type', flags: ['daddr'] } }, right: 'local' } });
export const ACCEPT: Statement = { accept: null };
export const RETURN: Statement = { return: null };
/** `reject` in an inet table, as nft lists it */
export const REJECT: Statement = { reject: { type: 'icmpx', expr: 'port-unreachable' } };
export const vmap = (key: Left, map: string): Statement => ({ vmap: { key, data: `@${map}` } });

/** One rule's canonical text: what two rules are compared by. */
export function ruleKey(rule: unknown): string {
  return JSON.stringify(rule);
}
