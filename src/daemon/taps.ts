/**
 * The tap hand-off, vnet's hot path: authorise the caller (kernel credentials, bridge.conf, the
 * network's allow lists), keep to the uid's quota, bring an on-demand network up, then make the
 * tap and put it on the bridge with synchronous ioctls, so the reply goes out before the link
 * events it causes are even read.
 */
import type { Logger } from 'pino';
import { ifnameProblem } from '../config/names.js';
import type { Definitions } from '../config/networks.js';
import type { PeerCred } from '../model.js';
import type { NetlinkError } from '../netlink/errors.js';
import { attachTap, openTap, type Tap } from '../netlink/tun.js';
import type { Identity } from '../identity/nss.js';
import { authorizeTap } from '../policy/access.js';
import type { NetworkRecord, NetworkRuntime } from '../runtime/network-runtime.js';
import type { TapEntry, TapRegistry } from '../runtime/tap-registry.js';
import type { NetworkSpec } from '../spec/spec.js';
import { failpoint } from '../sys/failpoint.js';
import type { Mutex } from '../sys/mutex.js';
import { parentPid } from '../sys/proc.js';
import { VnetError } from '../api/errors.js';
import type { TapResult } from './service.js';

export interface TapDeps {
  definitions: Definitions;
  runtime: NetworkRuntime;
  taps: TapRegistry;
  mutex: Mutex;
  log: Logger;
  quota: number;
  qemuConfDir: string;
  /** users and groups by name (NSS) */
  identity: Identity;
  /** an edited definition may open or close a bridge to the stock helper */
  syncAcl(specs: Iterable<NetworkSpec>): void;
  /** close a tap fd off the main thread (its last close tears the tap down: tap-closer.ts) */
  discardTap(fd: number, uid: number): void;
  /** re-list links and forget ghost taps */
  pruneTaps(): Promise<void>;
  /** the kind of the link named so ("bridge", "veth", ...; "" for none), undefined when there is none */
  linkKind(name: string): Promise<string | undefined>;
  /** after the reply: a restarted vnetd must know about the tap */
  handedOut(tap: TapEntry): void;
}

export async function handOut(d: TapDeps, bridge: string, opts: { vnetHdr: boolean }, caller: PeerCred): Promise<TapResult> {
  const problem = ifnameProblem(bridge);
  if (problem) throw new VnetError('EINVAL', `bridge name ${JSON.stringify(bridge)} ${problem}`);
  // the definition as it is now on disk (cached by file identity): an edited allow-list applies
  // at once, even to a network that is already up
  const { networks } = d.definitions.load();
  // the running copy of the network on this bridge (until a reload), else its definition; its
  // allow lists always as the file says now: revoking access never waits for a reload
  const running = d.runtime.all().find((r) => r.spec.bridge.name === bridge)?.spec;
  const onDisk = running ? networks.get(running.name) : [...networks.values()].find((s) => s.bridge.name === bridge);
  const spec = running ? { ...running, access: onDisk?.access ?? running.access } : onDisk;
  d.syncAcl(networks.values());
  await authorizeTap(bridge, spec, caller, d.qemuConfDir, d.identity);
  if (!spec) {
    // a bridge vnet does not manage (rare): make sure it is one before a tap is made for it
    const kind = await d.linkKind(bridge);
    if (kind === undefined) throw new VnetError('ENODEV', `no bridge named ${bridge} (and no vnet network uses it)`);
    if (kind !== 'bridge') throw new VnetError('EACCES', `${bridge} is not a bridge; taps go only on bridges`);
  }
  return d.mutex.run(async (lock) => {
    let live = d.taps.countFor(caller.uid);
    if (live >= d.quota) {
      // before refusing, make sure none of them is a ghost whose removal event was lost
      await d.pruneTaps();
      live = d.taps.countFor(caller.uid);
    }
    if (live >= d.quota) throw new VnetError('EDQUOT', `uid ${caller.uid} already holds ${live} taps, the most one user may hold (quota ${d.quota})`);
    let r: NetworkRecord | undefined;
    if (spec) {
      r = d.runtime.get(spec.name) as NetworkRecord | undefined;
      // forward = "bridge": the bridge is always there; "up" only adds DHCP, so a network that
      // is not on demand still takes taps while down
      const always = spec.forward.mode === 'bridge' && !spec.lifecycle.onDemand;
      if ((!r || r.state !== 'up') && !always) {
        if (!spec.lifecycle.onDemand && !r?.pinned) throw new VnetError('ENETDOWN', `network "${spec.name}" is down and not on-demand; run \`vnet up ${spec.name}\``);
        d.log.info({ network: spec.name, uid: caller.uid, pid: caller.pid }, 'bringing network up on demand');
        r = await d.runtime.up(lock, r?.spec ?? spec);
      }
    }
    // brought up for this request, maybe: it must not stay up forever
    const idle = () => r && d.runtime.scheduleIdle(r);
    let tap: Tap;
    try {
      tap = openTap({ vnetHdr: opts.vnetHdr, ownerUid: caller.uid });
    } catch (err) {
      idle();
      throw new VnetError('EIO', `could not create a tap: ${(err as Error).message}`, { cause: err });
    }
    let index: number;
    try {
      failpoint('tap:opened');
      index = attachTap(tap.name, bridge).index;
    } catch (err) {
      d.discardTap(tap.fd, caller.uid);
      idle();
      const errno = (err as NetlinkError).errno;
      if (errno === 'ENODEV') throw new VnetError('ENODEV', `no bridge named ${bridge} (and no vnet network uses it)`, { cause: err });
      if (errno === 'EOPNOTSUPP') throw new VnetError('EACCES', `${bridge} is not a bridge; taps go only on bridges`, { cause: err });
      throw new VnetError('EIO', `could not attach ${tap.name} to ${bridge}: ${(err as Error).message}`, { cause: err });
    }
    // the helper asks and exits; the tap lives as long as its parent (QEMU) holds the fd:
    // read before the reply, while the helper surely still exists
    const entry: TapEntry = { name: tap.name, ifindex: index, uid: caller.uid, pid: parentPid(caller.pid) ?? caller.pid, ...(spec ? { network: spec.name } : {}) };
    if (r) d.runtime.tapArrived(r.spec.name);
    d.taps.add(entry);
    failpoint('tap:prepared');
    setImmediate(() => {
      d.taps.announce(entry);
      d.log.info({ tap: tap.name, bridge, uid: caller.uid, pid: entry.pid }, 'tap handed out');
      d.handedOut(entry);
    });
    return { fd: tap.fd, name: tap.name };
  });
}
