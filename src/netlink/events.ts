/**
 * Link notifications from the kernel (RTNLGRP_LINK multicast), no polling.
 * 'new' is sent for a created link and for every change of one (up/down,
 * master, MTU...); 'del' when it is gone. Bridge-port notifications
 * (family AF_BRIDGE) are skipped: they describe port state, not links.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import netlink from 'netlink';
import { setSockOptInt } from '../sys/libc.js';
import type { rt as rtTypes } from 'netlink';
import { wrapError, type NetlinkError } from './errors.js';
import { linkFromMessage, type Link } from './encode.js';

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
const AF_UNSPEC = 0;

export function watchLinks(onEvent: (e: LinkEvent) => void, opts: WatchOptions = {}): LinkWatcher {
  let sock: ReturnType<typeof netlink.createRtNetlink>;
  try {
    // a large receive buffer makes ENOBUFS (lost events) rarer on bursts; the kernel caps it at rmem_max
    sock = netlink.createRtNetlink({ ref: opts.ref ?? true, recvBufferSize: 1 << 20, sendBufferSize: 0 });
    sock.addMembership('LINK');
  } catch (err) {
    throw wrapError('subscribe to', 'link events', err);
  }
  const raw = sock.socket;
  const row = socketRow(raw.address().port);
  if (row) {
    // Without NETLINK_NO_ENOBUFS an overflow marks the socket with an error that the
    // netlink package's native code cannot report (it aborts the process). With it,
    // lost events only show in the kernel's drop counter, which drops() reads.
    const fd = fdOfInode(row.inode);
    if (fd !== undefined) {
      setSockOptInt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, 1, 'link events socket');
      try {
        setSockOptInt(fd, SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20, 'link events socket');
      } catch {
        /* not root: the default buffer */
      }
    }
  }
  raw.on('message', (msgs) => {
    for (const m of msgs) {
      if (m.type !== RTM_DELLINK && (m.type !== RTM_NEWLINK || opts.deletionsOnly)) continue;
      let parsed: rtTypes.LinkMessage;
      try {
        parsed = netlink.rt.parseLinkMessage(m.data);
      } catch {
        continue;
      }
      if ((parsed.data.family ?? AF_UNSPEC) !== AF_UNSPEC) continue;
      const link = linkFromMessage(parsed);
      if (link) onEvent({ type: m.type === RTM_NEWLINK ? 'new' : 'del', link });
    }
  });
  raw.on('error', (err) => opts.onError?.(wrapError('receive', 'link events', err)));
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
