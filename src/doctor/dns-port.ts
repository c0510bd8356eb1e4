/**
 * Port 53 held on the wildcard address (0.0.0.0 or ::) by another DNS server: a system dnsmasq
 * without bind-interfaces, named, unbound. vnet's dnsmasq binds port 53 on each bridge's own
 * address, and Linux refuses that bind beside a TCP socket listening on the wildcard address of
 * the same port (SO_REUSEADDR does not help against a listener): vnet's dnsmasq exits at once,
 * again after each restart, and the network fails with "dnsmasq keeps failing". Read from
 * /proc/net/{tcp,udp}{,6} of this network namespace (vnetd's); the holder is found by its socket's
 * inode in /proc/PID/fd (another user's processes only as root).
 */
import { readdir, readFile, readlink } from 'node:fs/promises';
import { primary4 } from '../spec/spec.js';
import { failure, note, passed, printable, reasonOf, warning, type Finding } from './finding.js';
import { list, named, type Scope } from './scope.js';

export interface Socket {
  proto: 'tcp' | 'udp';
  family: 4 | 6;
  /** the local address as /proc shows it (hex) */
  address: string;
  port: number;
  /** kernel socket state, hex: "0A" LISTEN (tcp), "07" (udp: unconnected) */
  state: string;
  uid: number;
  inode: number;
}

export interface Holder {
  pid: number;
  comm: string;
}

export interface DnsPortFacts {
  /** wildcard sockets on port 53 */
  sockets: Socket[];
  /** who holds each socket, by inode (only what could be read) */
  holders: Map<number, Holder>;
  /** /proc/net files that could not be read, with why */
  unreadable: string[];
  /** doctor could not look into every process's fds (not root) */
  partial: boolean;
}

const CHECK = 'dns-port';
const WILDCARD = /^0+$/;

/** The sockets of one /proc/net/{tcp,udp}{,6} file. Pure. */
export function parseProcNet(text: string, proto: 'tcp' | 'udp', family: 4 | 6): Socket[] {
  const out: Socket[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    const local = /^([0-9A-F]+):([0-9A-F]{4})$/i.exec(f[1] ?? '');
    if (!local || f.length < 10) continue;
    out.push({ proto, family, address: local[1]!, port: parseInt(local[2]!, 16), state: f[3]!.toUpperCase(), uid: Number(f[7]), inode: Number(f[9]) });
  }
  return out;
}

/** Is it a socket that holds port 53 on the wildcard address (tcp: listening; udp: bound)? */
export function holdsWildcard53(s: Socket): boolean {
  return s.port === 53 && WILDCARD.test(s.address) && (s.proto === 'udp' ? s.state === '07' : s.state === '0A');
}

function describe(s: Socket, holders: Map<number, Holder>, partial: boolean): string {
  const h = holders.get(s.inode);
  const who = h ? `${h.comm} (pid ${h.pid})` : partial ? `a process of uid ${s.uid} (run doctor as root to name it)` : `a process of uid ${s.uid}`;
  return `${s.proto.toUpperCase()} ${s.family === 4 ? '0.0.0.0' : '[::]'}:53 by ${who}`;
}

export function judgeDnsPort(f: DnsPortFacts, scope: Scope): Finding[] {
  const out: Finding[] = f.unreadable.map((u) => note(CHECK, `could not read ${u}`));
  const dns = scope.networks.filter((n) => primary4(n) !== undefined);
  const held = f.sockets.filter(holdsWildcard53);
  if (held.length === 0 || dns.length === 0) return out.length ? out : [passed(CHECK)];
  const comms = new Set(held.map((s) => f.holders.get(s.inode)?.comm).filter((c): c is string => c !== undefined));
  const what = held.map((s) => describe(s, f.holders, f.partial)).join(', ');
  const fixes = [
    comms.has('dnsmasq') ? "a system dnsmasq: add `bind-interfaces` (or `bind-dynamic`) and `listen-address=127.0.0.1` to /etc/dnsmasq.conf, then `sudo systemctl restart dnsmasq`" : '',
    comms.has('named') ? 'named: `listen-on { 127.0.0.1; };` (and `listen-on-v6 { ::1; };`) in its options, then `sudo systemctl restart named`' : '',
    comms.has('unbound') ? 'unbound: `interface: 127.0.0.1` in unbound.conf, then `sudo systemctl restart unbound`' : '',
    'make that server listen on its own addresses only, or stop it (`sudo systemctl disable --now SERVICE`)',
  ].filter(Boolean);
  const tcp = held.some((s) => s.proto === 'tcp');
  const msg = `port 53 is held on the wildcard address: ${what}. vnet's dnsmasq for ${list(dns.map(named))} binds port 53 on the bridge's address, which Linux refuses beside ${tcp ? 'a listener' : 'a socket'} on the wildcard address: it exits, and the network fails with "dnsmasq keeps failing"`;
  out.push(tcp ? failure(CHECK, msg, fixes.join('; or ')) : warning(CHECK, msg, fixes.join('; or ')));
  return out;
}

/** inode → holder, from /proc/PID/fd links "socket:[INODE]"; `partial` when some process could not be looked into. */
async function holdersOf(inodes: Set<number>, proc: string): Promise<{ holders: Map<number, Holder>; partial: boolean }> {
  const holders = new Map<number, Holder>();
  let partial = false;
  if (inodes.size === 0) return { holders, partial };
  for (const pid of (await readdir(proc)).filter((p) => /^\d+$/.test(p))) {
    let fds: string[];
    try {
      fds = await readdir(`${proc}/${pid}/fd`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') partial = true;
      continue;
    }
    for (const fd of fds) {
      const m = /^socket:\[(\d+)\]$/.exec(await readlink(`${proc}/${pid}/fd/${fd}`).catch(() => ''));
      const inode = Number(m?.[1]);
      if (!m || !inodes.has(inode) || holders.has(inode)) continue;
      const comm = printable((await readFile(`${proc}/${pid}/comm`, 'utf8').catch(() => '?')).trim());
      holders.set(inode, { pid: Number(pid), comm });
    }
  }
  return { holders, partial };
}

export async function gatherDnsPort(proc = '/proc'): Promise<DnsPortFacts> {
  const sockets: Socket[] = [];
  const unreadable: string[] = [];
  for (const [file, proto, family] of [['tcp', 'tcp', 4], ['tcp6', 'tcp', 6], ['udp', 'udp', 4], ['udp6', 'udp', 6]] as const) {
    try {
      sockets.push(...parseProcNet(await readFile(`${proc}/net/${file}`, 'utf8'), proto, family).filter(holdsWildcard53));
    } catch (err) {
      // no IPv6 in this kernel: nothing listens there
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') unreadable.push(`${proc}/net/${file}: ${reasonOf(err)}`);
    }
  }
  const { holders, partial } = await holdersOf(new Set(sockets.map((s) => s.inode)), proc);
  return { sockets, holders, unreadable, partial };
}
