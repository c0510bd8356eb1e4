/**
 * Link notifications from the kernel (RTNLGRP_LINK multicast), no polling.
 * 'new' is sent for a created link and for every change of one (up/down,
 * master, MTU...); 'del' when it is gone. Bridge-port notifications
 * (family AF_BRIDGE) are skipped: they describe port state, not links.
 */
import netlink from 'netlink';
import type { rt as rtTypes } from 'netlink';
import { wrapError, type NetlinkError } from './errors.js';
import { linkFromMessage, type Link } from './links.js';

export interface LinkEvent {
  type: 'new' | 'del';
  link: Link;
}

export interface LinkWatcher {
  close(): void;
  /** let the process exit while the watcher is open */
  unref(): void;
  ref(): void;
}

export interface WatchOptions {
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
  raw.on('message', (msgs) => {
    for (const m of msgs) {
      if (m.type !== RTM_NEWLINK && m.type !== RTM_DELLINK) continue;
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
  };
}
