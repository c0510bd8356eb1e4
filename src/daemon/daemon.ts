/**
 * vnetd's state owner. Holds what each network is doing, turns requests into plans,
 * runs them through the applier, hands out taps and takes on-demand networks down
 * when their last tap goes. Every adapter (socket, D-Bus) talks to this class only
 * through VnetService.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Paths } from '../config/paths.js';
import { loadDefinitions } from '../config/networks.js';
import { ifnameProblem } from '../config/names.js';
import { confFilePath, dnsmasqConfig, leaseFilePath } from '../dhcp/dnsmasq.js';
import { reapOrphans } from '../dhcp/orphans.js';
import { watchLeases, type LeaseWatcher } from '../dhcp/leases.js';
import { LeaseCache } from '../dhcp/lease-cache.js';
import { checkLeaseQuery, LeaseQueryError, liveLeaseCount, pageLeases, type LeasePage, type LeaseQuery } from '../dhcp/lease-page.js';
import { DnsmasqSupervisor } from '../dhcp/supervisor.js';
import type { NetworkDef, NetworkState, PeerCred, TapInfo } from '../model.js';
import { Nft } from '../nat/nft.js';
import { monitorRuleset, type RulesetMonitor } from '../nat/monitor.js';
import { buildRuleset, ruleCount, RULES_PER_NETWORK, type NatNetwork } from '../nat/ruleset.js';
import { watchLinks, type LinkWatcher } from '../netlink/events.js';
import { Rtnl, type Link } from '../netlink/links.js';
import { attachTap, openTap } from '../netlink/tun.js';
import { BridgeConf } from '../qemu/bridge-conf.js';
import { bridgeMac, natNetworkOf, PlanError, planDown, planStub, planUp, type Observed } from '../plan/planner.js';
import { closeFd } from '../sys/libc.js';
import { failpoint } from '../sys/failpoint.js';
import { parentPid } from '../sys/proc.js';
import { ipv4ForwardingEnabled } from '../sys/sysctl.js';
import { applyAll, applyBestEffort, type ApplyContext } from './apply.js';
import { authorizeTap, isAdmin } from './authorize.js';
import { Mutex } from '../sys/mutex.js';
import { StateStore, type PersistedState } from './state.js';
import { ServiceError, type NetworkStatus, type ServiceEvent, type TapResult, type VnetService } from './service.js';

export interface DaemonOptions {
  paths: Paths;
  log: Logger;
  /** live taps one uid may hold at once */
  tapQuota?: number;
  /** dnsmasq binary */
  dnsmasq?: string;
}

interface Net {
  def: NetworkDef;
  state: NetworkState;
  pinned: boolean;
  taps: Map<string, TapInfo>;
  idleTimer?: NodeJS.Timeout | undefined;
  dnsmasq?: DnsmasqSupervisor | undefined;
  reason?: string | undefined;
}

/** restarts of an nft monitor that keeps ending wait 1 s, 2 s, 4 s ... up to a minute */
const RULESET_RETRY_MIN_MS = 1000;
const RULESET_RETRY_MAX_MS = 60_000;

export class Daemon implements VnetService {
  readonly paths: Paths;
  private readonly log: Logger;
  private readonly rtnl = new Rtnl();
  private readonly nft = new Nft();
  private readonly mutex = new Mutex();
  private readonly events = new EventEmitter();
  private readonly nets = new Map<string, Net>();
  /** taps on bridges vnet does not manage (allowed by bridge.conf): counted for quotas */
  private readonly foreignTaps = new Map<string, TapInfo>();
  private readonly store: StateStore;
  private readonly tapQuota: number;
  private readonly dnsmasqBinary: string;
  private nat: NatNetwork[] = [];
  private owned = new Map<string, number>();
  /** bridges being created right now (write-ahead: adopted after a crash if they carry vnet's MAC) */
  private readonly pending = new Set<string>();
  private forwardingByVnet = false;
  private watcher?: LinkWatcher;
  private rulesetWatch?: RulesetMonitor;
  /** wait before the next restart of an nft monitor that ended by itself: doubles, reset by a healthy run */
  private rulesetRetryMs = RULESET_RETRY_MIN_MS;
  private dropCheck?: NodeJS.Timeout;
  private seenDrops = 0;
  private readonly leaseWatchers = new Map<string, LeaseWatcher>();
  /** lease files parsed once per version; a bad file is a problem of its network only */
  private readonly leaseCache = new LeaseCache();
  private readonly bridgeConf: BridgeConf;
  private closed = false;
  private readonly saving = new Mutex();
  /** the open bridges last written to vnet.conf */
  private bridgeConfKey?: string;

  constructor(opts: DaemonOptions) {
    this.paths = opts.paths;
    this.log = opts.log;
    this.tapQuota = opts.tapQuota ?? 64;
    this.dnsmasqBinary = opts.dnsmasq ?? 'dnsmasq';
    this.store = new StateStore(path.join(opts.paths.runtimeDir, 'state.json'));
    this.bridgeConf = new BridgeConf(opts.paths.qemuConfDir);
    this.events.setMaxListeners(0);
  }

  /** Create folders, watch links, adopt what a previous vnetd left. */
  async start(): Promise<void> {
    await mkdir(this.paths.runtimeDir, { recursive: true, mode: 0o755 });
    await mkdir(path.join(this.paths.stateDir, 'dnsmasq'), { recursive: true, mode: 0o755 });
    await mkdir(path.join(this.paths.runtimeDir, 'dnsmasq'), { recursive: true, mode: 0o755 });
    // dnsmasq children of a killed vnetd outlive it; the networks that want one start a fresh one
    const orphans = await reapOrphans(path.join(this.paths.runtimeDir, 'dnsmasq'));
    if (orphans.length) this.log.warn({ pids: orphans }, 'killed dnsmasq left behind by a previous vnetd');
    this.watcher = watchLinks((e) => this.onLinkGone(e.link), {
      deletionsOnly: true,
      onError: (err) => {
        this.log.warn({ err }, 'link events: receive error; re-listing links');
        this.resyncTaps();
      },
    });

    await this.mutex.run(async () => {
      await this.reconcile();
      await this.raiseStubs();
    });
    await this.syncBridgeConf();
  }

  /** On-demand networks with standby = "stub" show an UP bridge from the start (gnome-boxes looks for one). */
  private async raiseStubs(): Promise<void> {
    const { networks } = await loadDefinitions(this.paths.networksDir);
    for (const def of networks.values()) {
      if (!def.onDemand || def.standby !== 'stub' || this.nets.has(def.name)) continue;
      const net: Net = { def, state: 'down', pinned: false, taps: new Map() };
      this.nets.set(def.name, net);
      try {
        await applyAll(planStub(def, await this.observe()), this.applyContext());
        this.setState(net, 'stub');
      } catch (err) {
        this.nets.delete(def.name);
        this.log.error({ err, network: def.name }, 'could not raise the stub bridge');
      }
    }
    await this.persist();
  }

  /**
   * Stop serving. The dataplane (bridges, rules, taps) stays in the kernel and a
   * restarted vnetd adopts it; only the dnsmasq children stop (and start again then).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.mutex.run(async () => {
      for (const net of this.nets.values()) {
        clearTimeout(net.idleTimer);
        await net.dnsmasq?.stop();
      }
    });
    this.watcher?.close();
    clearInterval(this.dropCheck);
    this.rulesetWatch?.close();
    this.rulesetWatch = undefined;
    for (const w of this.leaseWatchers.values()) w.close();
    // after every queued write (a tap handed out or gone): the caller exits next
    await this.persist().catch((err) => this.log.error({ err }, 'could not save state'));
    this.rtnl.close();
  }

  // ---- VnetService ----

  async list(): Promise<NetworkStatus[]> {
    const { networks } = await loadDefinitions(this.paths.networksDir);
    void this.syncBridgeConf(networks);
    const names = new Set([...networks.keys(), ...this.nets.keys()]);
    const out: NetworkStatus[] = [];
    for (const name of [...names].sort()) {
      const def = this.nets.get(name)?.def ?? networks.get(name);
      if (def) out.push(await this.statusOf(def));
    }
    return out;
  }

  async status(name: string): Promise<NetworkStatus> {
    return this.statusOf(await this.definition(name));
  }

  async up(name: string, caller: PeerCred): Promise<NetworkStatus> {
    this.requireAdmin(caller, `bring up network "${name}"`);
    const def = await this.definition(name);
    await this.mutex.run(async () => {
      const net = await this.bringUp(def);
      net.pinned = true;
      clearTimeout(net.idleTimer);
      net.idleTimer = undefined;
      await this.persist();
    });
    return this.statusOf(def);
  }

  async down(name: string, caller: PeerCred, opts: { force?: boolean } = {}): Promise<NetworkStatus> {
    this.requireAdmin(caller, `bring down network "${name}"`);
    const def = await this.definition(name);
    await this.mutex.run(async () => {
      // looked up under the lock: idle-down or an on-demand up may have replaced the record meanwhile
      const net = this.nets.get(name);
      if (!net) return;
      await this.pruneTaps();
      if (net.taps.size > 0 && !opts.force) {
        const list = [...net.taps.values()].map((t) => `${t.name} (uid ${t.uid}, pid ${t.pid})`).join(', ');
        throw new ServiceError('EBUSY', `network "${name}" has ${net.taps.size} tap(s) in use: ${list}; stop the VMs first or use --force`);
      }
      // forced: the taps live on without a bridge until their VMs close them, and still count for quotas
      for (const t of net.taps.values()) this.foreignTaps.set(t.name, t);
      net.taps.clear();
      await this.takeDown(net, false);
    });
    return this.statusOf(def);
  }

  async leases(name: string, query: LeaseQuery = {}): Promise<LeasePage> {
    try {
      checkLeaseQuery(query);
    } catch (err) {
      if (err instanceof LeaseQueryError) throw new ServiceError('EINVAL', err.message);
      throw err;
    }
    const def = await this.definition(name);
    const snapshot = await this.leaseCache.get(leaseFilePath(this.paths.stateDir, def.name));
    if (snapshot.problem) throw new ServiceError('EIO', `network "${name}": ${snapshot.problem}`);
    return pageLeases(snapshot.leases, query);
  }

  async tap(bridge: string, opts: { vnetHdr: boolean }, caller: PeerCred): Promise<TapResult> {
    const problem = ifnameProblem(bridge);
    if (problem) throw new ServiceError('EINVAL', `bridge name ${JSON.stringify(bridge)} ${problem}`);
    // the definition as it is now on disk (cached by file identity): an edited allow-list
    // applies at once, even to a network that is already up
    const { networks } = await loadDefinitions(this.paths.networksDir);
    const def = [...networks.values()].find((d) => d.bridge === bridge) ?? this.netForBridge(bridge)?.def;
    void this.syncBridgeConf(networks); // an edited definition may open or close a bridge to the stock helper
    await authorizeTap({ bridge, def, caller, qemuConfDir: this.paths.qemuConfDir, rtnl: this.rtnl });
    return this.mutex.run(async () => {
      let live = this.allTaps().filter((t) => t.uid === caller.uid).length;
      if (live >= this.tapQuota) {
        // before refusing, make sure none of them is a ghost whose removal event was lost
        await this.pruneTaps();
        live = this.allTaps().filter((t) => t.uid === caller.uid).length;
      }
      if (live >= this.tapQuota)
        throw new ServiceError('EDQUOT', `uid ${caller.uid} already holds ${live} taps, the most one user may hold (quota ${this.tapQuota})`);
      let net: Net | undefined;
      if (def) {
        net = this.nets.get(def.name);
        if (!net || net.state !== 'up') {
          if (!def.onDemand && !net?.pinned)
            throw new ServiceError('ENETDOWN', `network "${def.name}" is down and not on-demand; run \`vnet up ${def.name}\``);
          this.log.info({ network: def.name, uid: caller.uid, pid: caller.pid }, 'bringing network up on demand');
          net = await this.bringUp(def);
        }
      }
      let tap: ReturnType<typeof openTap>;
      let prepared: Link;
      try {
        tap = openTap({ vnetHdr: opts.vnetHdr, ownerUid: caller.uid });
      } catch (err) {
        if (net) this.scheduleIdle(net); // brought up for this request, maybe: it must not stay up forever
        throw new ServiceError('EIO', `could not create a tap: ${(err as Error).message}`, { cause: err });
      }
      try {
        failpoint('tap:opened');
        // synchronous ioctls, no await: the reply goes out before the link events it causes are read
        prepared = attachTap(tap.name, bridge);
      } catch (err) {
        closeFd(tap.fd);
        if (net) this.scheduleIdle(net);
        const errno = (err as { errno?: string }).errno;
        if (errno === 'ENODEV') throw new ServiceError('ENODEV', `no bridge named ${bridge} (and no vnet network uses it)`, { cause: err });
        if (errno === 'EOPNOTSUPP') throw new ServiceError('EACCES', `${bridge} is not a bridge; taps go only on bridges`, { cause: err });
        throw new ServiceError('EIO', `could not attach ${tap.name} to ${bridge}: ${(err as Error).message}`, { cause: err });
      }
      // the helper asks and exits; the tap lives as long as its parent (QEMU) holds the fd:
      // read before the reply, while the helper surely still exists
      const info: TapInfo = { name: tap.name, ifindex: prepared.index, uid: caller.uid, pid: parentPid(caller.pid) ?? caller.pid };
      if (net) {
        clearTimeout(net.idleTimer);
        net.idleTimer = undefined;
        net.taps.set(tap.name, info);
      } else {
        this.foreignTaps.set(tap.name, info);
      }
      this.watchDrops();
      failpoint('tap:prepared');
      // after the reply
      setImmediate(() => {
        if (net) this.emit({ type: 'tap-added', network: net.def.name, tap: info });
        this.log.info({ tap: tap.name, bridge, uid: caller.uid, pid: info.pid }, 'tap handed out');
        // a restarted vnetd must know this network has a VM on it
        void this.persist().catch((err) => this.log.error({ err }, 'could not save state'));
      });
      return { fd: tap.fd, name: tap.name };
    });
  }

  /** Is any network up or changing? (A stub is only an UP bridge: it needs no daemon.) */
  hasActiveNetworks(): boolean {
    return [...this.nets.values()].some((n) => n.state !== 'down' && n.state !== 'stub');
  }

  subscribe(listener: (e: ServiceEvent) => void): () => void {
    this.events.on('event', listener);
    return () => this.events.off('event', listener);
  }

  // ---- internals ----

  private emit(e: ServiceEvent): void {
    this.events.emit('event', e);
  }

  private setState(net: Net, state: NetworkState, reason?: string): void {
    net.state = state;
    net.reason = reason;
    this.emit({ type: 'network-state', name: net.def.name, state, ...(reason ? { reason } : {}) });
  }

  private netForBridge(bridge: string): Net | undefined {
    return [...this.nets.values()].find((n) => n.def.bridge === bridge);
  }

  private async definition(name: string): Promise<NetworkDef> {
    const running = this.nets.get(name);
    if (running) return running.def;
    const { networks, errors } = await loadDefinitions(this.paths.networksDir);
    const err = errors.get(name);
    if (err) throw new ServiceError('EINVAL', err.message, { cause: err });
    const def = networks.get(name);
    if (!def) {
      const known = [...networks.keys()].join(', ') || 'none';
      throw new ServiceError('ENOENT', `no network named "${name}" (defined: ${known}; definitions live in ${this.paths.networksDir})`);
    }
    return def;
  }

  private requireAdmin(caller: PeerCred, what: string): void {
    if (!isAdmin(caller))
      throw new ServiceError('EPERM', `uid ${caller.uid} may not ${what}: needs root or membership of group "vnet"`);
  }

  private async observe(): Promise<Observed> {
    const [links, addresses, routes] = await Promise.all([this.rtnl.listLinks(), this.rtnl.listAddresses4(), this.rtnl.listRoutes4()]);
    const owned = new Set<string>();
    for (const [name, index] of this.owned) if (links.some((l) => l.name === name && l.index === index)) owned.add(name);
    return { links, addresses, routes, owned };
  }

  private applyContext(): ApplyContext {
    return {
      rtnl: this.rtnl,
      nft: this.nft,
      log: this.log,
      startDnsmasq: (name) => this.startDnsmasq(name),
      stopDnsmasq: (name) => this.stopDnsmasq(name),
      rulesetApplied: (networks) => {
        this.nat = networks;
        this.watchRuleset();
      },
      beforeStep: async (step) => {
        if (step.action === 'create-bridge') this.pending.add(step.bridge);
        else if (step.action === 'set-forwarding' && step.enabled) this.forwardingByVnet = true;
        else return;
        await this.persist();
      },
      afterStep: async (step, ok) => {
        if (step.action === 'create-bridge') {
          // failed: the name was taken (somebody else's bridge) or a half-made one the rollback deletes
          if (ok) {
            const link = await this.rtnl.getLinkByName(step.bridge);
            if (link) this.owned.set(step.bridge, link.index);
          }
          this.pending.delete(step.bridge);
        } else if (!ok) {
          return;
        } else if (step.action === 'delete-bridge') {
          this.owned.delete(step.bridge);
        } else if (step.action === 'set-forwarding' && !step.enabled) {
          this.forwardingByVnet = false;
        } else if (step.action !== 'apply-ruleset') {
          return;
        }
        await this.persist();
      },
    };
  }

  /** Bring a network fully up (from down, stub or failed). Caller holds the mutex. */
  private async bringUp(def: NetworkDef): Promise<Net> {
    let net = this.nets.get(def.name);
    if (net?.state === 'up') return net;
    if (!net) {
      net = { def, state: 'down', pinned: false, taps: new Map() };
      this.nets.set(def.name, net);
    }
    const was = net.state;
    net.def = def;
    const t0 = performance.now();
    try {
      this.setState(net, 'starting');
      await this.persist();
      const observed = await this.observe();
      const after = [...this.nat.filter((n) => n.bridge !== def.bridge), natNetworkOf(def)];
      const plan = planUp(def, observed, { before: this.nat, after }, await ipv4ForwardingEnabled());
      await applyAll(plan, this.applyContext());
    } catch (err) {
      // never left in "starting": back to the stub it was, gone, or failed (with taps or pinned)
      const message = err instanceof Error ? err.message : String(err);
      if (was === 'stub') this.setState(net, 'stub');
      else if (net.taps.size === 0 && !net.pinned) this.nets.delete(def.name);
      else this.setState(net, 'failed', message);
      await this.persist().catch((e) => this.log.error({ err: e }, 'could not save state'));
      if (err instanceof PlanError) throw new ServiceError(err.code, err.message, { cause: err });
      throw new ServiceError('EIO', `network "${def.name}" could not come up: ${message}`, { cause: err });
    }
    this.setState(net, 'up');
    this.log.info({ network: def.name, bridge: def.bridge, ms: +(performance.now() - t0).toFixed(1) }, 'network up');
    await this.persist();
    return net;
  }

  /** Take a network down (to nothing, or to its stub). Caller holds the mutex. */
  private async takeDown(net: Net, toStub: boolean): Promise<void> {
    const def = net.def;
    clearTimeout(net.idleTimer);
    net.idleTimer = undefined;
    this.setState(net, 'stopping');
    await this.persist();
    const t0 = performance.now();
    const observed = await this.observe();
    const after = this.nat.filter((n) => n.bridge !== def.bridge);
    const plan = planDown(def, observed, { after }, {
      toStub,
      restoreForwarding: this.forwardingByVnet && after.length === 0,
      dnsmasqRunning: !!net.dnsmasq,
      rulesetHasIt: this.nat.some((n) => n.bridge === def.bridge),
    });
    try {
      await applyBestEffort(plan, this.applyContext());
    } catch (err) {
      this.setState(net, 'failed', (err as Error).message);
      await this.persist();
      throw new ServiceError('EIO', `network "${def.name}" did not come down cleanly: ${(err as Error).message}`, { cause: err });
    }
    net.pinned = false;
    if (toStub) {
      this.setState(net, 'stub');
    } else {
      this.setState(net, 'down');
      this.nets.delete(def.name);
    }
    this.log.info({ network: def.name, ms: +(performance.now() - t0).toFixed(1), stub: toStub }, 'network down');
    await this.persist();
  }

  private async startDnsmasq(name: string): Promise<void> {
    const net = this.nets.get(name);
    if (!net) throw new Error(`network ${name} has no runtime state`);
    const confPath = confFilePath(this.paths.runtimeDir, name);
    const sup = new DnsmasqSupervisor({
      name,
      confPath,
      config: dnsmasqConfig(net.def, { runtimeDir: this.paths.runtimeDir, stateDir: this.paths.stateDir }),
      binary: this.dnsmasqBinary,
      logger: this.log.child({ dnsmasq: name }),
      leaseFile: leaseFilePath(this.paths.stateDir, name),
    });
    sup.on('failed', (reason: string) => {
      if (this.nets.get(name) !== net) return;
      this.log.error({ network: name, reason }, 'dnsmasq keeps failing; network marked failed');
      this.setState(net, 'failed', `dnsmasq keeps failing: ${reason}`);
    });
    await sup.start();
    net.dnsmasq = sup;
    this.leaseWatchers.get(name)?.close();
    this.leaseWatchers.set(
      name,
      watchLeases(leaseFilePath(this.paths.stateDir, name), (e) =>
        this.emit({ type: e.type === 'added' ? 'lease-added' : 'lease-removed', network: name, lease: e.lease }),
      ),
    );
  }

  private async stopDnsmasq(name: string): Promise<void> {
    const net = this.nets.get(name);
    const sup = net?.dnsmasq;
    this.leaseWatchers.get(name)?.close();
    this.leaseWatchers.delete(name);
    if (!sup) return;
    net.dnsmasq = undefined;
    await sup.stop();
  }

  /**
   * bridge.conf upkeep: an `allow` line in vnet.conf for every network that lets every
   * local user in (a network with allow-users/allow-groups must not be opened to the
   * stock setuid helper), included once from bridge.conf. Failure is logged, not fatal.
   */
  private async syncBridgeConf(known?: Map<string, NetworkDef>): Promise<void> {
    try {
      const networks = known ?? (await loadDefinitions(this.paths.networksDir)).networks;
      const open = [...networks.values()].filter((d) => !d.allowUsers && !d.allowGroups).map((d) => d.bridge).sort();
      const key = open.join(' ');
      if (key === this.bridgeConfKey) return; // nothing changed: no file I/O (tap() and list() call this)
      this.bridgeConfKey = key;
      await this.bridgeConf.setBridges(open);
    } catch (err) {
      this.bridgeConfKey = undefined;
      this.log.warn({ err }, `could not update ${this.bridgeConf.bridgeConfPath}`);
    }
  }

  /** While vnet has a table, watch for others changing the ruleset and restore ours. */
  private watchRuleset(): void {
    if (this.nat.length === 0 || this.closed) {
      this.rulesetWatch?.close();
      this.rulesetWatch = undefined;
      return;
    }
    if (this.rulesetWatch) return;
    const started = Date.now();
    this.rulesetWatch = monitorRuleset(() => void this.mutex.run(() => this.verifyRuleset()).catch((err) => this.log.error({ err }, 'ruleset check failed')), {
      onExit: (code, err) => {
        this.rulesetWatch = undefined;
        // one that started and then ran for at least the longest wait was a good start: back to quick restarts
        if (Date.now() - started >= RULESET_RETRY_MAX_MS) this.rulesetRetryMs = RULESET_RETRY_MIN_MS;
        const delay = this.rulesetRetryMs;
        this.rulesetRetryMs = Math.min(delay * 2, RULESET_RETRY_MAX_MS);
        this.log.warn({ code, err, retryMs: delay }, err ? 'nft monitor could not be started; retrying' : 'nft monitor exited; restarting it');
        setTimeout(() => this.watchRuleset(), delay).unref();
      },
    });
  }

  private async verifyRuleset(): Promise<void> {
    if (this.nat.length === 0) return;
    const table = await this.nft.listTable();
    const want = RULES_PER_NETWORK * this.nat.length;
    const have = table === undefined ? 0 : ruleCount(table);
    if (have === want) return;
    this.log.warn({ have, want }, 'vnet nft table was changed by someone else: re-applying it');
    await this.nft.apply(buildRuleset(this.nat));
  }

  /**
   * The kernel drops link events when they come faster than they are read; a lost
   * RTM_DELLINK would leave a ghost tap. While taps exist (never on an idle machine),
   * re-list links whenever the socket's drop counter moved.
   */
  private watchDrops(): void {
    if (this.dropCheck || this.closed) return;
    this.dropCheck = setInterval(() => {
      if (this.allTaps().length === 0) {
        clearInterval(this.dropCheck);
        this.dropCheck = undefined;
        return;
      }
      const drops = this.watcher?.drops() ?? 0;
      if (drops === this.seenDrops) return;
      this.seenDrops = drops;
      this.log.warn({ drops }, 'link events were lost: re-listing links');
      this.resyncTaps();
    }, 3000);
    this.dropCheck.unref();
  }

  /** Re-list links and forget the taps whose removal event was lost (in the background, under the mutex). */
  private resyncTaps(): void {
    if (this.closed) return;
    void this.mutex.run(() => this.pruneTaps()).catch((err) => this.log.error({ err }, 'tap resync failed'));
  }

  /** Forget taps the kernel no longer has (a lost event); caller holds the mutex. */
  private async pruneTaps(): Promise<void> {
    const links = await this.rtnl.listLinks();
    const alive = (t: TapInfo) => links.some((l) => l.name === t.name && l.index === t.ifindex);
    for (const t of [...this.foreignTaps.values()]) if (!alive(t)) this.foreignTaps.delete(t.name);
    for (const net of this.nets.values()) {
      for (const t of [...net.taps.values()]) if (!alive(t)) this.onLinkGone({ index: t.ifindex, name: t.name, up: false, mtu: 0 });
    }
  }

  private allTaps(): TapInfo[] {
    return [...this.foreignTaps.values(), ...[...this.nets.values()].flatMap((n) => [...n.taps.values()])];
  }

  private onLinkGone(link: Link): void {
    if (this.foreignTaps.get(link.name)?.ifindex === link.index) this.foreignTaps.delete(link.name);
    for (const net of this.nets.values()) {
      if (net.def.bridge === link.name && this.owned.get(link.name) === link.index) {
        this.onBridgeGone(net, link);
        continue;
      }
      const tap = net.taps.get(link.name);
      if (!tap || tap.ifindex !== link.index) continue;
      net.taps.delete(link.name);
      this.emit({ type: 'tap-removed', network: net.def.name, tap });
      this.log.info({ tap: tap.name, network: net.def.name, uid: tap.uid }, 'tap gone');
      void this.persist().catch((err) => this.log.error({ err }, 'could not save state'));
      this.scheduleIdle(net);
    }
  }

  /** Someone else deleted a bridge of ours: the network failed; the next `up` or tap rebuilds it. */
  private onBridgeGone(net: Net, link: Link): void {
    this.owned.delete(link.name);
    if (net.state === 'stopping') return; // our own teardown
    this.log.warn({ network: net.def.name, bridge: link.name }, 'bridge deleted by someone else');
    void this.mutex
      .run(async () => {
        if (this.nets.get(net.def.name) !== net || net.state === 'down') return;
        await this.stopDnsmasq(net.def.name);
        this.setState(net, 'failed', `bridge ${link.name} was deleted by someone else`);
        await this.persist();
      })
      .catch((err) => this.log.error({ err }, 'could not record the lost bridge'));
  }

  private scheduleIdle(net: Net): void {
    if (net.taps.size > 0 || net.pinned || !net.def.onDemand || this.closed) return;
    clearTimeout(net.idleTimer);
    net.idleTimer = setTimeout(() => {
      net.idleTimer = undefined;
      void this.mutex
        .run(async () => {
          if (net.taps.size > 0 || net.pinned || this.nets.get(net.def.name) !== net) return;
          this.log.info({ network: net.def.name }, 'last tap gone: taking network down');
          await this.takeDown(net, net.def.standby === 'stub');
        })
        .catch((err) => this.log.error({ err }, 'idle-down failed'));
    }, net.def.idleDown * 1000);
  }

  private async statusOf(def: NetworkDef): Promise<NetworkStatus> {
    const net = this.nets.get(def.name);
    let leases = 0;
    let leasesProblem: string | undefined;
    if (net && (net.state === 'up' || net.state === 'starting')) {
      const snapshot = await this.leaseCache.get(leaseFilePath(this.paths.stateDir, def.name));
      leases = liveLeaseCount(snapshot.leases, Date.now() / 1000);
      leasesProblem = snapshot.problem;
    }
    const s: NetworkStatus = {
      name: def.name,
      bridge: def.bridge,
      state: net?.state ?? 'down',
      subnet: def.ipv4.cidr,
      address: def.ipv4.address,
      forward: def.forward,
      onDemand: def.onDemand,
      pinned: net?.pinned ?? false,
      leases,
      taps: net ? [...net.taps.values()] : [],
      source: def.source,
    };
    if (net?.reason) s.reason = net.reason;
    if (leasesProblem) s.leasesProblem = leasesProblem;
    return s;
  }

  /** Save the state; writes are queued, and each one takes its snapshot when its turn comes. */
  private persist(): Promise<void> {
    const write = async () => {
      const state: PersistedState = {
        version: 1,
        owned: Object.fromEntries(this.owned),
        pending: [...this.pending],
        forwardingByVnet: this.forwardingByVnet,
        nat: this.nat,
        networks: Object.fromEntries(
          [...this.nets.values()].map((n) => [n.def.name, { state: n.state, pinned: n.pinned, bridge: n.def.bridge, taps: [...n.taps.values()] }]),
        ),
      };
      await this.store.save(state);
    };
    return this.saving.run(write);
  }

  /**
   * Adopt what a previous vnetd left: its bridges (same name and ifindex as recorded),
   * its NAT set, its forwarding flag and the taps still alive. Networks that were up
   * are brought up again (idempotent: only what is missing is made); networks no
   * definition wants any more are removed.
   */
  private async reconcile(): Promise<void> {
    const saved = await this.store.load();
    if (!saved) return;
    this.owned = new Map(Object.entries(saved.owned));
    this.forwardingByVnet = saved.forwardingByVnet;
    this.nat = saved.nat;
    const { networks } = await loadDefinitions(this.paths.networksDir);
    const links = await this.rtnl.listLinks();
    // A crash between creating a bridge and recording it: adopt it only if it is a
    // bridge carrying the MAC vnet gives that name; anything else is the admin's.
    for (const name of saved.pending ?? []) {
      const link = links.find((l) => l.name === name);
      if (link?.kind === 'bridge' && link.mac === bridgeMac(name)) this.owned.set(name, link.index);
    }
    for (const [name, index] of this.owned) if (!links.some((l) => l.name === name && l.index === index)) this.owned.delete(name);
    for (const [name, rec] of Object.entries(saved.networks)) {
      const def = networks.get(name);
      if (!def || def.bridge !== rec.bridge) {
        this.log.warn({ network: name }, 'network recorded as running has no definition any more: removing it');
        const index = this.owned.get(rec.bridge);
        const link = links.find((l) => l.name === rec.bridge && l.index === index);
        if (link) await this.rtnl.deleteLink(link.index);
        this.owned.delete(rec.bridge);
        this.nat = this.nat.filter((n) => n.bridge !== rec.bridge);
        continue;
      }
      const net: Net = { def, state: 'down', pinned: rec.pinned, taps: new Map() };
      for (const t of rec.taps) if (links.some((l) => l.name === t.name && l.index === t.ifindex)) net.taps.set(t.name, t);
      // taps on our bridge that the record missed (handed out just before a crash) are VMs too
      const br = links.find((l) => l.name === def.bridge && this.owned.get(def.bridge) === l.index);
      for (const l of links) {
        if (br && l.master === br.index && l.kind === 'tun' && !net.taps.has(l.name))
          net.taps.set(l.name, { name: l.name, ifindex: l.index, uid: tapOwner(l.name), pid: 0 });
      }
      this.nets.set(name, net);
      try {
        if (rec.state === 'stub') {
          await applyAll(planStub(def, await this.observe()), this.applyContext());
          this.setState(net, 'stub');
        } else if (rec.state === 'stopping') {
          await this.takeDown(net, false);
          continue;
        } else {
          await this.bringUp(def);
        }
      } catch (err) {
        this.log.error({ err, network: name }, 'could not restore network');
      }
      this.scheduleIdle(net);
    }
    if (this.allTaps().length) this.watchDrops();
    // Only networks now up keep rules; re-applying restores the table after a flush or a crash mid-apply.
    this.nat = this.nat.filter((n) => [...this.nets.values()].some((net) => net.def.bridge === n.bridge && net.state === 'up'));
    await this.nft.apply(buildRuleset(this.nat));
    this.watchRuleset();
    await this.persist();
  }
}

/** The uid a tap belongs to (TUNSETOWNER), from sysfs; -1 when unknown. */
function tapOwner(name: string): number {
  try {
    const v = Number(readFileSync(`/sys/class/net/${name}/owner`, 'utf8').trim());
    return Number.isInteger(v) ? v : -1;
  } catch {
    return -1;
  }
}
