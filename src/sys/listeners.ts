/**
 * Who holds a port on this host: the sockets in /proc/net/{tcp,tcp6,udp,udp6}, which show the
 * network namespace of the reading process (vnetd's, the host's). A TCP port is held by a
 * listening socket, a UDP port by any socket bound to it. Parsing is pure; reading is one small
 * file a family.
 */
import { readFile } from 'node:fs/promises';
import { fromBytes } from '../net/ip.js';

export interface Holder {
  /** "127.0.0.1:8080", "[::]:53" */
  local: string;
  /** the socket's owner */
  uid: number;
}

/** TCP_LISTEN in /proc/net/tcp's `st` column */
const LISTEN = '0A';

/** /proc/net's address: 32-bit words in host (little-endian) order, hex. */
function addressOf(hex: string): string {
  const words = hex.match(/.{8}/g) ?? [];
  const bytes = words.flatMap((w) => (w.match(/../g) ?? []).reverse().map((b) => parseInt(b, 16)));
  const text = fromBytes(Buffer.from(bytes));
  return bytes.length === 4 ? text : `[${text}]`;
}

/** The sockets of one /proc/net table holding `port` (TCP: listening only). Pure. */
export function parseHolders(text: string, proto: 'tcp' | 'udp', port: number): Holder[] {
  const out: Holder[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const [addr, hexPort] = f[1]!.split(':');
    if (!addr || !/^([0-9A-Fa-f]{8}|[0-9A-Fa-f]{32})$/.test(addr) || !hexPort || parseInt(hexPort, 16) !== port) continue;
    if (proto === 'tcp' && f[3] !== LISTEN) continue;
    out.push({ local: `${addressOf(addr)}:${port}`, uid: Number(f[7]) });
  }
  return out;
}

/** The local sockets holding `proto` port `port` (v4 and v6); a table the kernel lacks (no IPv6) counts as none. */
export async function portHolders(proto: 'tcp' | 'udp', port: number, procNet = '/proc/net'): Promise<Holder[]> {
  const out: Holder[] = [];
  for (const table of [proto, `${proto}6`]) {
    let text: string;
    try {
      text = await readFile(`${procNet}/${table}`, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    out.push(...parseHolders(text, proto, port));
  }
  return out;
}
