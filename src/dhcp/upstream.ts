/**
 * The upstream DNS servers vnet's dnsmasq forwards to: the host's /etc/resolv.conf, read by vnetd
 * (not by dnsmasq) and written into each network's config as `server=` lines with `no-resolv`.
 *
 * Why not let dnsmasq read the file: a dnsmasq that watches its resolv file holds an inotify
 * instance, and the kernel allows 128 per user (fs.inotify.max_user_instances); every vnet dnsmasq
 * runs as the same account, so the 128th network could not start its server. With `no-resolv`
 * (and no `*-dir` option) dnsmasq opens no inotify instance at all.
 *
 * Loopback servers are kept: dnsmasq runs on the host, so a local stub resolver (systemd-resolved
 * on 127.0.0.53) answers it as it answers the host.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';

export const RESOLV_CONF = '/etc/resolv.conf';

/** resolv.conf is a few lines; anything past this is not read */
const MAX_BYTES = 64 * 1024;

/** An upstream server dnsmasq accepts in `server=`: IPv4, or IPv6 with an optional %scope (an interface name or index). */
export function isServerAddress(s: string): boolean {
  if (isIPv4(s)) return true;
  const [addr, scope, ...rest] = s.split('%');
  if (rest.length || !addr || !isIPv6(addr)) return false;
  return scope === undefined || /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/.test(scope);
}

/** The `nameserver` addresses of a resolv.conf text, in order, without duplicates; malformed ones skipped. */
export function parseResolvConf(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    // as the resolver reads it: keyword, blanks, the address as the first word; # and ; start comments
    const m = /^nameserver[ \t]+([^\s#;]+)/.exec(line);
    if (m && isServerAddress(m[1]!) && !out.includes(m[1]!)) out.push(m[1]!);
  }
  return out;
}

/**
 * The host's upstream servers, read again only when the file changed (inode, size, times): a plan
 * asks once per network it configures, and the answer is the same for all of them.
 */
export class UpstreamServers {
  private key?: string;
  private servers: readonly string[] = [];

  constructor(readonly file: string = RESOLV_CONF) {}

  current(): readonly string[] {
    let fd: number;
    try {
      // O_NONBLOCK: a FIFO put there must not stall vnetd (it is then refused as not a regular file)
      fd = openSync(this.file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
    } catch {
      this.key = undefined;
      return (this.servers = []); // no resolv.conf: no upstream (dnsmasq answers its own names only)
    }
    try {
      const st = fstatSync(fd, { bigint: true });
      if (!st.isFile()) throw new Error('not a regular file');
      const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
      if (key === this.key) return this.servers;
      const buf = Buffer.alloc(Math.min(Number(st.size), MAX_BYTES));
      let n = 0;
      while (n < buf.length) {
        const got = readSync(fd, buf, n, buf.length - n, n);
        if (got === 0) break;
        n += got;
      }
      this.servers = Object.freeze(parseResolvConf(buf.subarray(0, n).toString('utf8')));
      this.key = key;
      return this.servers;
    } catch {
      this.key = undefined;
      return (this.servers = []);
    } finally {
      closeSync(fd);
    }
  }
}
