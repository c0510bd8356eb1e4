/**
 * vnetd's wiring: the network runtime, the tap registry and the reconciler with its backends,
 * plus the watchers that feed them (link deletions, DHCP servers, leases, the ruleset guard) and
 * the state file. Implements VnetService, the one API every adapter (socket, D-Bus) talks to.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { Definitions } from '../config/networks.js';
import { loadSettings, vnetTomlPath } from '../config/vnet-toml.js';
import type { Paths } from '../config/paths.js';
import { contributors } from '../desired/desired.js';
import { leaseFilePath } from '../dhcp/dnsmasq.js';
import { LeaseCache } from '../dhcp/lease-cache.js';
import { checkLeaseQuery, LeaseQueryError, liveLeaseCount, pageLeases, type LeasePage, type LeaseQuery } from '../dhcp/lease-page.js';
import { reapOrphans } from '../dhcp/orphans.js';
import { DnsmasqServers } from '../dhcp/servers.js';
import { hostFirewalls, watchHostFirewalls } from '../firewall/host-firewalls.js';
import { Resolved } from '../hostdns/resolved.js';
import { Nft } from '../firewall/nft.js';
import type { PeerCred } from '../model.js';
import { watchAddressing, watchLinks, type LinkWatcher } from '../netlink/events.js';
import { Rtnl } from '../netlink/rtnl.js';
import { NssIdentity, type Identity } from '../identity/nss.js';
import { isAdmin } from '../policy/access.js';
import { BridgeConf } from '../qemu/bridge-conf.js';
import { Reconciler } from '../reconcile/reconciler.js';
import { SubnetAllocator } from '../runtime/allocator.js';
import { AutoSubnets } from '../runtime/auto-subnets.js';
import { BridgeAclSync } from '../runtime/bridge-acl-sync.js';
import { ConflictWatch } from '../runtime/conflict-watch.js';
import { LeaseWatch } from '../runtime/lease-watch.js';
import { NetworkRuntime } from '../runtime/network-runtime.js';
import { RulesetGuard } from '../runtime/ruleset-guard.js';
import { StateFile, type SavedNetwork } from '../runtime/state-file.js';
import { TapRegistry } from '../runtime/tap-registry.js';
import { specChanges } from '../spec/changes.js';
import type { NetworkSpec } from '../spec/spec.js';
import { systemClock, type Clock } from '../sys/clock.js';
import { Mutex, type Lock } from '../sys/mutex.js';
import { ProcSysctl } from '../sys/sysctl.js';
import { TapCloser } from './tap-closer.js';
import { TapSync } from './tap-sync.js';
import { handOut, type TapDeps } from './taps.js';
import { findNetwork } from './lookup.js';
import { PortForwardStore } from '../runtime/port-forward-store.js';
import { portHolders } from '../sys/listeners.js';
import { PortForwards } from './port-forwards.js';
import { isQualified, publicName } from '../usernet/names.js';
import { NOBODY, resolveName, shortName, visibleTo } from '../usernet/resolve.js';
import { UserNetworkStore } from '../usernet/store.js';
import { UserNetworks, type CreateRequest } from '../usernet/user-networks.js';
import { VnetError, toVnetError } from '../api/errors.js';
import { statusOf, type NetworkStatus, type PortForwardInfo, type PortForwardRequest, type ReloadResult, type ServiceEvent, type TapResult, type VnetService } from './service.js';

export interface DaemonOptions {
  paths: Paths;
  log: Logger;
  /** live taps one uid may hold at once */
  tapQuota?: number;
  /** dnsmasq binary */
  dnsmasq?: string;
  clock?: Clock;
  /** users and groups by name (default: NSS through getent) */
  identity?: Identity;
}

export class Daemon implements VnetService {
  readonly paths: Paths;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly mutex = new Mutex();
  private readonly events = new EventEmitter();
  private readonly definitions: Definitions;
  /** address = "auto": the subnets picked, filled into the definitions as they load */
  private readonly auto: AutoSubnets;
  /** networks users created (vnet create), added to the definitions as OWNER:NAME */
  private readonly users: UserNetworks;
  private readonly rtnl = new Rtnl();
  private readonly nft = new Nft();
  private readonly servers: DnsmasqServers;
  private readonly stateFile: StateFile;
  private readonly taps = new TapRegistry();
  /** closes tap fds off the main thread: the socket server's copies, and taps never handed out */
  readonly tapCloser = new TapCloser();
  private readonly leaseWatch: LeaseWatch;
  private readonly acl: BridgeAclSync;
  private readonly guard: RulesetGuard;
  private readonly tapQuota: number;
  private readonly identity: Identity;
  /** lease files parsed once per version; a bad file is a problem of its network only */
  private readonly leaseCache = new LeaseCache();
  private reconciler!: Reconciler;
  private runtime!: NetworkRuntime;
  private watcher?: LinkWatcher;
  /** routes and addresses that overlap an up network's subnet after it came up */
  private conflicts?: ConflictWatch;
  private readonly tapSync: TapSync;
  private closed = false;
  private unwatchHostFirewalls?: () => void;
  /** forwards added at run time ($VNET_STATE_DIR), merged into every definition handed out */
  private readonly forwardStore: PortForwardStore;
  private portForwards!: PortForwards;
  private resolved?: Resolved;

  constructor(opts: DaemonOptions) {
    this.paths = opts.paths;
    this.log = opts.log;
    this.clock = opts.clock ?? systemClock;
    this.tapQuota = opts.tapQuota ?? 64;
    this.identity = opts.identity ?? new NssIdentity({ clock: this.clock });
    // vnet.toml is strict: a bad key stops vnetd here, naming file and key
    const settings = loadSettings(opts.paths.configDir);
    // one allocator for address = "auto" and user networks: neither picks a subnet the other has
    const allocator = new SubnetAllocator(path.join(opts.paths.stateDir, 'allocations.json'));
    this.auto = new AutoSubnets(allocator, settings.autoPool, opts.log);
    this.users = new UserNetworks({
      policy: settings.userNetworks,
      policyFile: vnetTomlPath(opts.paths.configDir),
      store: new UserNetworkStore(path.join(opts.paths.stateDir, 'user-networks', 'networks.json')),
      allocator,
      identity: this.identity,
      host: async () => {
        const [links, routes, addresses] = await Promise.all([this.rtnl.listLinks(), this.rtnl.listRoutes(), this.rtnl.listAddresses()]);
        return { links, routes, addresses };
      },
      networks: () => [...this.definitions.load().networks.values(), ...this.runtime.all().map((r) => r.spec)],
      stateDir: opts.paths.stateDir,
      runtimeDir: opts.paths.runtimeDir,
      log: opts.log,
    });
    this.forwardStore = new PortForwardStore(path.join(opts.paths.stateDir, 'port-forwards.json'));
    this.definitions = new Definitions(opts.paths.networksDir, Date.now, (set) => this.forwardStore.merge(this.auto.resolveSet(set)), () => this.users.specs());
    this.servers = new DnsmasqServers({ log: opts.log, ...(opts.dnsmasq ? { binary: opts.dnsmasq } : {}) });
    this.stateFile = new StateFile(path.join(opts.paths.runtimeDir, 'state.json'));
    this.leaseWatch = new LeaseWatch(opts.log, this.leaseCache);
    this.tapSync = new TapSync({ taps: this.taps, mutex: this.mutex, log: opts.log, listLinks: () => this.rtnl.listLinks(), drops: () => this.watcher?.drops() ?? 0 });
    this.acl = new BridgeAclSync(new BridgeConf(opts.paths.qemuConfDir), opts.log);
    this.guard = new RulesetGuard({
      log: opts.log,
      clock: this.clock,
      check: () => this.mutex.run((lock) => this.repairRuleset(lock)),
      ownedBy: (pid) => this.nft.ownTransaction(pid),
    });
    this.events.setMaxListeners(0);
  }

  /** Create folders, watch links, adopt what a previous vnetd left, raise stubs. */
  async start(): Promise<void> {
    await mkdir(this.paths.runtimeDir, { recursive: true, mode: 0o755 });
    await mkdir(path.join(this.paths.stateDir, 'dnsmasq'), { recursive: true, mode: 0o755 });
    await mkdir(path.join(this.paths.runtimeDir, 'dnsmasq'), { recursive: true, mode: 0o755 });
    // dnsmasq children of a killed vnetd outlive it; the networks that want one start a fresh one
    const orphans = await reapOrphans(path.join(this.paths.runtimeDir, 'dnsmasq'));
    if (orphans.length) this.log.warn({ pids: orphans }, 'killed dnsmasq left behind by a previous vnetd');
    const saved = await this.stateFile.load();
    const walls = hostFirewalls(loadSettings(this.paths.configDir), this.log);
    this.resolved = new Resolved({ log: this.log.child({ component: 'resolved' }) });
    this.reconciler = new Reconciler({
      backends: { links: this.rtnl, firewall: this.nft, sysctl: new ProcSysctl(), dhcp: this.servers, hostFirewalls: walls, hostDns: this.resolved },
      contributors: contributors({ runtimeDir: this.paths.runtimeDir, stateDir: this.paths.stateDir }),
      log: this.log,
      journal: saved.journal,
      save: () => this.persist(),
    });
    this.runtime = new NetworkRuntime({
      reconciler: this.reconciler,
      mutex: this.mutex,
      clock: this.clock,
      log: this.log,
      tapsOn: (n) => this.taps.onNetwork(n).length,
      persist: () => this.persist(),
      prepare: async (spec) => {
        if (!spec.auto) return spec;
        const [links, routes, addresses] = await Promise.all([this.rtnl.listLinks(), this.rtnl.listRoutes(), this.rtnl.listAddresses()]);
        const others = [...this.definitions.load().networks.values(), ...this.runtime.all().map((r) => r.spec)];
        return this.auto.prepare(spec, { links, routes, addresses }, others);
      },
    });
    this.portForwards = new PortForwards({
      store: this.forwardStore,
      runtime: this.runtime,
      mutex: this.mutex,
      log: this.log,
      definitions: () => this.definitions.load(),
      spec: (name) => this.definition(name),
      requireAdmin: (caller, what) => this.requireAdmin(caller, what),
      holders: (proto, port) => portHolders(proto, port),
    });
    const forwardTrouble = this.forwardStore.problem();
    if (forwardTrouble) this.log.error(forwardTrouble);
    this.conflicts = new ConflictWatch({
      host: this.rtnl,
      subscribe: (changed) => {
        const w = watchAddressing(changed, { onError: changed });
        return () => w.close();
      },
      networks: () => this.runtime.all().filter((r) => r.state === 'up').map((r) => r.spec),
      report: (name, conflict) => this.runtime.setConflict(name, conflict),
      clock: this.clock,
      log: this.log,
    });
    this.wireEvents();
    this.watcher = watchLinks((e) => this.onLinkGone(e.link.name, e.link.index), {
      deletionsOnly: true,
      onError: (err) => {
        this.log.warn({ err }, 'link events: receive error; re-listing links');
        this.tapSync.resync();
      },
    });
    const loaded = this.definitions.load();
    const { networks } = loaded;
    await this.auto.prune(loaded);
    await this.users.prune();
    await this.mutex.run(async (lock) => {
      await this.reconciler.settle(lock);
      const links = await this.rtnl.listLinks();
      for (const [key, rec] of Object.entries(saved.networks)) {
        // a user network is saved under its public name (src/usernet/names.ts): the file is everyone's to read
        const spec = networks.get(key) ?? [...networks.values()].find((s) => publicName(s.name) === key);
        this.adoptSaved(spec?.name ?? key, rec, spec, links);
      }
      for (const t of saved.foreignTaps) if (links.some((l) => l.name === t.name && l.index === t.ifindex)) this.taps.restore(t);
      const stubs = [...networks.values()].filter((s) => s.lifecycle.onDemand && s.lifecycle.standby === 'stub');
      const autostart = [...networks.values()].filter((s) => s.lifecycle.autostart);
      await this.runtime.restore(lock, stubs, { autostart, done: saved.autostarted });
      this.guard.watch(this.runtime.all().some((r) => r.level === 'up'));
    });
    // what took an up network's subnet while vnetd was away shows at once
    if (this.runtime.all().some((r) => r.state === 'up')) await this.conflicts.check();
    // firewalld reloaded or restarted: its runtime bindings are gone; bind the healthy networks again
    // and systemd-resolved (re)started: it holds no bridge's DNS settings
    this.unwatchHostFirewalls = watchHostFirewalls([...walls, this.resolved!], (name) => {
      if (this.closed) return;
      this.log.info({ firewall: name }, 'host firewall reloaded: letting the networks through again');
      void this.mutex
        .run((lock) => this.reconciler.converge(lock, this.runtime.targets(), { names: this.runtime.healthy(), sweep: true }, 'best-effort'))
        .catch((err) => this.log.error({ err, firewall: name }, 'could not let the networks through again'));
    });
    if (this.taps.size) this.tapSync.watch();
    await this.acl.sync(networks.values());
  }

  /** A network the previous vnetd ran: adopted with the taps still alive on its bridge, if its definition still wants that bridge. */
  private adoptSaved(name: string, rec: SavedNetwork, spec: NetworkSpec | undefined, links: ReadonlyArray<{ name: string; index: number; master?: number; kind?: string }>): void {
    if (!spec || spec.bridge.name !== rec.bridge) {
      this.log.warn({ network: name }, 'network recorded as running has no definition any more: removing it');
      return; // its bridge and rules are swept: nothing wants them
    }
    this.runtime.adopt(spec, rec);
    for (const t of rec.taps) if (links.some((l) => l.name === t.name && l.index === t.ifindex)) this.taps.restore({ ...t, network: name });
    // taps on our bridge that the record missed (handed out just before a crash) are VMs too
    const br = links.find((l) => l.name === spec.bridge.name && this.reconciler.owned().get(spec.bridge.name) === l.index);
    for (const l of links) {
      if (br && l.master === br.index && l.kind === 'tun' && !this.taps.all().some((t) => t.name === l.name))
        this.taps.restore({ name: l.name, ifindex: l.index, uid: tapOwner(l.name), pid: 0, network: name });
    }
  }

  private wireEvents(): void {
    this.runtime.on('state', (name, state, reason) => {
      this.emit({ type: 'network-state', name, state, ...(reason ? { reason } : {}) });
      this.guard.watch(this.runtime.all().some((r) => r.level === 'up'));
      this.conflicts?.watch(this.runtime.all().some((r) => r.state === 'up'));
    });
    this.runtime.on('conflict', (network, c) =>
      this.emit({ type: 'subnet-conflict', network, ...(c ? { conflict: { subnet: c.subnet, interface: c.interface, detail: c.detail } } : {}) }),
    );
    this.runtime.on('changed', () => void this.persist().catch((err) => this.log.error({ err }, 'could not save state')));
    this.taps.on('added', (t) => t.network && this.emit({ type: 'tap-added', network: t.network, tap: t }));
    this.taps.on('removed', (t) => {
      this.log.info({ tap: t.name, network: t.network, uid: t.uid }, 'tap gone');
      void this.persist().catch((err) => this.log.error({ err }, 'could not save state'));
      if (!t.network) return;
      this.emit({ type: 'tap-removed', network: t.network, tap: t });
      const r = this.runtime.get(t.network);
      if (r) this.runtime.scheduleIdle(r as Parameters<NetworkRuntime['scheduleIdle']>[0]);
    });
    this.servers.on('started', (c) => this.leaseWatch.started(c));
    this.servers.on('stopped', (n) => this.leaseWatch.stopped(n));
    this.servers.on('failed', (n, reason) => this.runtime.dhcpFailed(n, reason));
    this.leaseWatch.on('added', (network, lease) => this.emit({ type: 'lease-added', network, lease }));
    this.leaseWatch.on('removed', (network, lease) => this.emit({ type: 'lease-removed', network, lease }));
  }

  /**
   * Stop serving. The dataplane (bridges, rules, taps) stays in the kernel and a restarted vnetd
   * adopts it; only the dnsmasq children stop (and start again then).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.runtime?.close();
    await this.mutex.run(() => this.servers.stopAll());
    this.watcher?.close();
    this.conflicts?.close();
    this.tapSync.close();
    this.guard.close();
    this.unwatchHostFirewalls?.();
    this.resolved?.close();
    this.leaseWatch.close();
    // after every queued write (a tap handed out or gone): the caller exits next
    await this.persist().catch((err) => this.log.error({ err }, 'could not save state'));
    this.rtnl.close();
  }

  // ---- VnetService ----

  async list(caller?: PeerCred): Promise<NetworkStatus[]> {
    const { networks } = this.definitions.load();
    void this.acl.sync(networks.values());
    const names = new Set([...networks.keys(), ...this.runtime.all().map((r) => r.spec.name)]);
    const out: NetworkStatus[] = [];
    for (const name of [...names].sort()) {
      const spec = this.runtime.get(name)?.spec ?? networks.get(name);
      if (spec && visibleTo(spec, caller?.uid ?? NOBODY)) out.push(await this.statusOf(spec));
    }
    return out;
  }

  async status(name: string, caller?: PeerCred): Promise<NetworkStatus> {
    return this.statusOf(this.definition(name, caller));
  }

  async create(req: CreateRequest, caller: PeerCred): Promise<NetworkStatus> {
    const spec = await this.users.create(req, caller).catch(rethrow);
    return this.statusOf(spec);
  }

  async delete(name: string, caller: PeerCred, opts: { force?: boolean } = {}): Promise<void> {
    let spec: NetworkSpec;
    try {
      spec = this.definition(name, caller);
    } catch (err) {
      // one that no longer loads (an admin network took its subnet or bridge) is still its owner's to delete
      const own = err instanceof VnetError && err.code === 'EINVAL' ? resolveName(name, caller.uid, new Map(this.users.specs().map((s) => [s.name, s]))) : undefined;
      if (!own) throw err;
      spec = own;
    }
    if (spec.owner.kind !== 'user') throw new VnetError('EPERM', `"${spec.name}" is the admin's network: vnet delete removes only networks users created`);
    if (caller.uid !== 0 && caller.uid !== spec.owner.uid) throw new VnetError('EPERM', `only its owner (${spec.owner.user}) or root may delete network "${spec.name}"`);
    const down = () =>
      this.mutex.run(async (lock) => {
        if (!this.runtime.get(spec.name)) return;
        await this.tapSync.prune();
        const taps = this.taps.onNetwork(spec.name);
        if (taps.length > 0 && !opts.force) throw new VnetError('EBUSY', `network "${spec.name}" has ${taps.length} tap(s) in use; stop the VMs first or use --force`);
        this.taps.detach(spec.name);
        await this.runtime.down(lock, spec.name);
      });
    await this.users.remove(spec, down).catch(rethrow);
    await this.saved();
  }

  async up(name: string, caller: PeerCred): Promise<NetworkStatus> {
    await this.requireAdmin(caller, `bring up network "${name}"`);
    const spec = this.definition(name, caller);
    await this.mutex.run((lock) => this.runtime.up(lock, spec, { pin: true })).catch(rethrow);
    await this.saved();
    return this.statusOf(spec);
  }

  async down(name: string, caller: PeerCred, opts: { force?: boolean } = {}): Promise<NetworkStatus> {
    await this.requireAdmin(caller, `bring down network "${name}"`);
    const spec = this.definition(name, caller);
    name = spec.name; // as people say it: by its bridge too
    await this.mutex
      .run(async (lock) => {
        // looked up under the lock: idle-down or an on-demand up may have replaced the record meanwhile
        if (!this.runtime.get(name)) return;
        await this.tapSync.prune();
        const taps = this.taps.onNetwork(name);
        if (taps.length > 0 && !opts.force) {
          const list = taps.map((t) => `${t.name} (uid ${t.uid}, pid ${t.pid})`).join(', ');
          throw new VnetError('EBUSY', `network "${name}" has ${taps.length} tap(s) in use: ${list}; stop the VMs first or use --force`);
        }
        // forced: the taps live on without a bridge until their VMs close them, and still count for quotas
        this.taps.detach(name);
        await this.runtime.down(lock, name);
      })
      .catch(rethrow);
    await this.saved();
    return this.statusOf(spec);
  }

  async reload(name: string | undefined, caller: PeerCred): Promise<ReloadResult[]> {
    await this.requireAdmin(caller, name === undefined ? 'reload the network definitions' : `reload network "${name}"`);
    const target = name === undefined ? undefined : this.definition(name, caller).name;
    const { networks, errors } = this.definitions.load();
    void this.acl.sync(networks.values());
    return this.mutex
      .run(async (lock) => {
        const out: ReloadResult[] = [];
        const records = this.runtime.all().filter((r) => target === undefined || r.spec.name === target);
        // every edited definition is checked before any is applied: a reload of all changes all or none
        const plans = records.map((r) => {
          const err = errors.get(r.spec.name);
          if (err) throw new VnetError('EINVAL', err.message, { cause: err });
          const edited = networks.get(r.spec.name);
          if (!edited) throw new VnetError('ENOENT', `network "${r.spec.name}" runs, but its definition is gone; take it down with \`vnet down ${r.spec.name}\``);
          const changes = specChanges(r.spec, edited);
          const stuck = changes.find((c) => !c.live);
          if (stuck)
            throw new VnetError('ENOTLIVE', `network "${r.spec.name}": key \`${stuck.key}\` cannot change while the network runs (${edited.source}); take it down and up again to apply it`);
          return { r, edited, changes };
        });
        for (const { r, edited, changes } of plans) {
          if (changes.length) await this.runtime.reload(lock, r.spec.name, edited);
          out.push({ name: r.spec.name, changed: changes.map((c) => c.key) });
        }
        if (target !== undefined && out.length === 0) out.push({ name: target, changed: [] });
        return out;
      })
      .catch(rethrow)
      .finally(() => this.saved());
  }

  async leases(name: string, query: LeaseQuery = {}, caller?: PeerCred): Promise<LeasePage> {
    try {
      checkLeaseQuery(query);
    } catch (err) {
      if (err instanceof LeaseQueryError) throw new VnetError('EINVAL', err.message);
      throw err;
    }
    const spec = this.definition(name, caller);
    const snapshot = await this.leaseCache.get(leaseFilePath(this.paths.stateDir, spec.name));
    if (snapshot.problem) throw new VnetError('EIO', `network "${name}": ${snapshot.problem}`);
    return pageLeases(snapshot.leases, query);
  }

  async tap(bridge: string, opts: { vnetHdr: boolean }, caller: PeerCred): Promise<TapResult> {
    const deps: TapDeps = {
      definitions: this.definitions,
      runtime: this.runtime,
      taps: this.taps,
      mutex: this.mutex,
      log: this.log,
      quota: this.tapQuota,
      qemuConfDir: this.paths.qemuConfDir,
      identity: this.identity,
      syncAcl: (specs) => void this.acl.sync(specs),
      pruneTaps: () => this.tapSync.prune(),
      discardTap: (fd, uid) => this.tapCloser.close(fd, uid),
      linkKind: async (name) => {
        const l = await this.rtnl.getLinkByName(name);
        return l ? (l.kind ?? '') : undefined;
      },
      handedOut: () => {
        this.tapSync.watch();
        void this.persist().catch((err) => this.log.error({ err }, 'could not save state'));
      },
    };
    return handOut(deps, bridge, opts, caller).catch(rethrow);
  }

  async addPortForward(name: string, req: PortForwardRequest, caller: PeerCred): Promise<PortForwardInfo> {
    return this.portForwards.add(name, req, caller).catch(rethrow).finally(() => this.saved());
  }

  async removePortForward(name: string, proto: 'tcp' | 'udp', hostPort: number, caller: PeerCred): Promise<void> {
    return this.portForwards.remove(name, proto, hostPort, caller).catch(rethrow).finally(() => this.saved());
  }

  async listPortForwards(name: string | undefined): Promise<PortForwardInfo[]> {
    return this.portForwards.list(name);
  }

  /** Is any network up or changing? */
  hasActiveNetworks(): boolean {
    return this.runtime.active();
  }

  subscribe(listener: (e: ServiceEvent) => void): () => void {
    this.events.on('event', listener);
    return () => this.events.off('event', listener);
  }

  // ---- internals ----

  private emit(e: ServiceEvent): void {
    this.events.emit('event', e);
  }

  /** A network as `caller` names it (lookup.ts); no caller: the admin's networks alone. */
  private definition(name: string, caller?: PeerCred): NetworkSpec {
    return findNetwork(name, caller?.uid ?? NOBODY, {
      loaded: this.definitions.load(),
      running: this.runtime.all().map((r) => r.spec),
      userSpecs: this.users.specs(),
      networksDir: this.paths.networksDir,
    });
  }

  private async requireAdmin(caller: PeerCred, what: string): Promise<void> {
    if (!(await isAdmin(caller, this.identity))) throw new VnetError('EPERM', `uid ${caller.uid} may not ${what}: needs root or membership of group "vnet"`);
  }

  private async statusOf(given: NetworkSpec): Promise<NetworkStatus> {
    const r = this.runtime.get(given.name);
    // the running copy: what came up (address = "auto" gets its subnet only then)
    const spec = r?.spec ?? given;
    let leases = 0;
    let problem: string | undefined;
    if (r && (r.state === 'up' || r.state === 'starting')) {
      const snapshot = await this.leaseCache.get(leaseFilePath(this.paths.stateDir, spec.name));
      leases = liveLeaseCount(snapshot.leases, this.clock.now() / 1000);
      problem = snapshot.problem;
    }
    const s = statusOf(spec, r, this.taps.onNetwork(spec.name), leases, problem);
    if (r) {
      const onDisk = this.definitions.load().networks.get(spec.name);
      if (!onDisk || specChanges(r.spec, onDisk).length > 0) s.edited = true;
    }
    return s;
  }

  /** A full repair after someone else changed the ruleset: only when vnet's table differs by content. */
  private async repairRuleset(lock: Lock): Promise<void> {
    const targets = this.runtime.targets();
    if (await this.reconciler.firewallIntact(lock, targets)) return;
    this.log.warn('vnet nft table was changed by someone else: repairing it');
    await this.reconciler.converge(lock, targets, { names: this.runtime.healthy(), sweep: true }, 'best-effort');
  }

  /** Once every state write queued so far is done: a reply never runs ahead of what a restart would find. */
  private saved(): Promise<void> {
    return this.persist().catch((err) => this.log.error({ err }, 'could not save state'));
  }

  private persist(): Promise<void> {
    return this.stateFile.save(() => {
      const networks: Record<string, SavedNetwork> = {};
      for (const r of this.runtime?.all() ?? []) {
        networks[publicName(r.spec.name)] = { state: r.state, pinned: r.pinned, level: r.level, bridge: r.spec.bridge.name, taps: this.taps.onNetwork(r.spec.name).map(({ network: _n, ...t }) => t) };
      }
      const foreignTaps = this.taps.all().filter((t) => !t.network);
      return { journal: this.reconciler.journalNow(), networks, foreignTaps, autostarted: this.runtime?.autostartedNames() ?? [] };
    });
  }

  private onLinkGone(name: string, index: number): void {
    if (this.taps.linkGone(name, index)) return;
    const r = this.runtime.all().find((x) => x.spec.bridge.name === name);
    if (!r || this.reconciler.owned().get(name) !== index) return;
    void this.mutex.run((lock) => this.runtime.bridgeLost(lock, r.spec.name, name)).catch((err) => this.log.error({ err }, 'could not record the lost bridge'));
  }
}

function rethrow(err: unknown): never {
  throw toVnetError(err);
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
