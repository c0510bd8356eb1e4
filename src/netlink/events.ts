/**
 * Notifications from the kernel, no polling:
 *  - links (RTNLGRP_LINK): 'new' for a created link and for every change of one (up/down,
 *    master, MTU...); 'del' when it is gone. Bridge-port notifications (family AF_BRIDGE) are
 *    skipped: they describe port state, not links.
 *  - addressing (RTNLGRP_IPV4_ROUTE, IPV6_ROUTE, IPV4_IFADDR, IPV6_IFADDR): routes and addresses
 *    that come and go, as the ones a subnet can collide with (a VPN coming up); link-local ones
 *    (every tap's fe80::) are not reported.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import netlink from 'netlink';
import { rangeOf } from '../net/ip.js';
import { setSockOptInt } from '../sys/libc.js';
import type { rt as rtTypes } from 'netlink';
import { wrapError, type NetlinkError } from './errors.js';
import { linkFromMessage, type Link } from './encode.js';
import { addressFromMessage, routeFromMessage, type LinkAddress, type Route } from './rtnl.js';

export interface LinkEvent {
  type: 'new' | 'del';
  link: Link;
}

export interface LinkWatcher {
  close(): void;
  /** events the kernel dropped for this socket so far (its buffer overflowed): re-list links when it grows */
  drops(): number;
  /** let the process exit while the watcher is open */
  unref(): void;
  ref(): void;
}

export interface WatchOptions {
  /** report only deletions: new-link and change events are not even parsed (they come by the dozen per tap) */
  deletionsOnly?: boolean;
  /** keep the event loop alive (default true, like a server) */
  ref?: boolean;
  /**
   * A receive error, typically ENOBUFS when events came faster than they were
   * read: some were lost, so the caller should re-list links. Without this
   * handler the error is dropped.
   */
  onError?: (err: NetlinkError) => void;
}

const RTM_NEWLINK = 16;
const RTM_DELLINK = 17;
const RTM_NEWADDR = 20;
const RTM_DELADDR = 21;
const RTM_NEWROUTE = 24;
const RTM_DELROUTE = 25;
const AF_UNSPEC = 0;

type Group = 'LINK' | 'IPV4_ROUTE' | 'IPV6_ROUTE' | 'IPV4_IFADDR' | 'IPV6_IFADDR';
type RawMessage = { type: number; data: Buffer };

/** A socket in the caller's namespace subscribed to `groups`, calling `onMessage` for every message. */
function subscribe(what: string, groups: readonly Group[], onMessage: (m: RawMessage) => void, opts: WatchOptions): LinkWatcher {
  let sock: ReturnType<typeof netlink.createRtNetlink>;
  try {
    // a large receive buffer makes ENOBUFS (lost events) rarer on bursts; the kernel caps it at rmem_max
    sock = netlink.createRtNetlink({ ref: opts.ref ?? true, recvBufferSize: 1 << 20, sendBufferSize: 0 });
    for (const g of groups) sock.addMembership(g);
  } catch (err) {
    throw wrapError('subscribe to', what, err);
  }
  const raw = sock.socket;
  const row = socketRow(raw.address().port);
  if (row) {
    // Without NETLINK_NO_ENOBUFS an overflow marks the socket with an error that the
    // netlink package's native code cannot report (it aborts the process). With it,
    // lost events only show in the kernel's drop counter, which drops() reads.
    const fd = fdOfInode(row.inode);
    if (fd !== undefined) {
      setSockOptInt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, 1, `${what} socket`);
      try {
        setSockOptInt(fd, SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20, `${what} socket`);
      } catch {
        /* not root: the default buffer */
      }
    }
  }
  raw.on('message', (msgs) => {
    for (const m of msgs) onMessage(m);
  });
  raw.on('error', (err) => opts.onError?.(wrapError('receive', what, err)));
  let closed = false;
  return {
    close() {
      if (closed) return;
      closed = true;
      raw.close();
    },
    unref: () => raw.unref(),
    ref: () => raw.ref(),
    drops: () => (row ? (socketRow(row.port)?.drops ?? 0) : 0),
  };
}

export function watchLinks(onEvent: (e: LinkEvent) => void, opts: WatchOptions = {}): LinkWatcher {
  return subscribe(
    'link events',
    ['LINK'],
    (m) => {
      if (m.type !== RTM_DELLINK && (m.type !== RTM_NEWLINK || opts.deletionsOnly)) return;
      let parsed: rtTypes.LinkMessage;
      try {
        parsed = netlink.rt.parseLinkMessage(m.data);
      } catch {
        return;
      }
      if ((parsed.data.family ?? AF_UNSPEC) !== AF_UNSPEC) return;
      const link = linkFromMessage(parsed);
      if (link) onEvent({ type: m.type === RTM_NEWLINK ? 'new' : 'del', link });
    },
    opts,
  );
}

export type AddressingEvent =
  | { kind: 'route'; type: 'new' | 'del'; route: Route }
  | { kind: 'address'; type: 'new' | 'del'; address: LinkAddress };

/**
 * Routes of the main table and addresses, as they come and go, both families. Only those a
 * subnet can collide with are reported: no link-local addresses or routes, no multicast routes,
 * no routes of other tables (the local table's broadcast and host routes).
 */
export function watchAddressing(onEvent: (e: AddressingEvent) => void, opts: WatchOptions = {}): LinkWatcher {
  return subscribe(
    'route and address events',
    ['IPV4_ROUTE', 'IPV6_ROUTE', 'IPV4_IFADDR', 'IPV6_IFADDR'],
    (m) => {
      const type = m.type === RTM_NEWROUTE || m.type === RTM_NEWADDR ? 'new' : 'del';
      try {
        if (m.type === RTM_NEWROUTE || m.type === RTM_DELROUTE) {
          const route = routeFromMessage(netlink.rt.parseRouteMessage(m.data));
          if (route) onEvent({ kind: 'route', type, route });
        } else if (m.type === RTM_NEWADDR || m.type === RTM_DELADDR) {
          const address = addressFromMessage(netlink.rt.parseAddressMessage(m.data));
          if (address && !(address.family === 6 && rangeOf(address.address) === 'linkLocal')) onEvent({ kind: 'address', type, address });
        }
      } catch {
        /* a message the package cannot parse: not one vnet needs */
      }
    },
    opts,
  );
}

const SOL_SOCKET = 1;
const SO_RCVBUFFORCE = 33;
const SOL_NETLINK = 270;
const NETLINK_NO_ENOBUFS = 5;

/** This process's netlink socket bound to `port`, from /proc/self/net/netlink. */
function socketRow(port: number): { port: number; inode: number; drops: number } | undefined {
  let text: string;
  try {
    text = readFileSync('/proc/self/net/netlink', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n').slice(1)) {
    // sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
    const f = line.trim().split(/\s+/);
    if (f.length >= 10 && Number(f[2]) === port) return { port, drops: Number(f[8]), inode: Number(f[9]) };
  }
  return undefined;
}

function fdOfInode(inode: number): number | undefined {
  const want = `socket:[${inode}]`;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === want) return Number(fd);
    } catch {
      /* closed meanwhile */
    }
  }
  return undefined;
}
