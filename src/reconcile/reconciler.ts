/**
 * The reconciler: desired state for the networks at their levels, observed state of the host,
 * their diff, applied with undo and journaled. Recovery after a crash is the same path: the
 * journal says what vnet owns, observation says what is there, diff says what to do.
 */
import type { Logger } from 'pino';
import { bridgeMac } from '../desired/contributors/link.js';
import { desired, type Target } from '../desired/desired.js';
import type { Contributor, Desired } from '../desired/model.js';
import { baseIntact, partIntact, simulate, strays, type TableState } from '../firewall/table.js';
import type { LinkDns } from '../hostdns/resolved-api.js';
import type { Lock } from '../sys/mutex.js';
import { Applier } from './apply.js';
import type { Backends } from './backends.js';
import { diff, hostInterfaces, interfaceKey, type Scope } from './diff.js';
import { adopt, prune, record, type Journal } from './journal.js';
import type { Observed } from './observed.js';
import type { PlannedStep } from './steps.js';

export interface ReconcilerOptions {
  backends: Backends;
  contributors: readonly Contributor[];
  log: Logger;
  /** the journal as last saved */
  journal: Journal;
  /** save the journal (the daemon keeps it in its state file) */
  save(journal: Journal): Promise<void>;
}

export type Mode = 'rollback' | 'best-effort';

export class Reconciler {
  private journal: Journal;
  /** vnet's table as last listed and changed since by vnet's own transactions */
  private table?: TableState;
  private readonly applier: Applier;

  constructor(private readonly opts: ReconcilerOptions) {
    this.journal = opts.journal;
    this.applier = new Applier(
      opts.backends,
      {
        journal: () => this.journal,
        record: async (step, event) => {
          const next = record(this.journal, step, event);
          if (next === this.journal) return;
          this.journal = next;
          await this.opts.save(next);
        },
        firewallApplied: (step) => {
          if (this.table) this.table = simulate(this.table, step.tx);
        },
      },
      opts.log,
    );
  }

  /** The bridges vnet owns, by name. */
  owned(): ReadonlyMap<string, number> {
    return this.journal.owned;
  }

  /** The journal as it is now (saved with the runtime's records). */
  journalNow(): Journal {
    return this.journal;
  }

  /**
   * Settle the journal with what the kernel holds: a bridge whose creation had begun is adopted
   * only if it is a bridge carrying the MAC vnet gives that name (anything else is the admin's);
   * owned bridges that are gone are forgotten.
   */
  async settle(_lock: Lock): Promise<void> {
    const [links, addresses] = await Promise.all([this.opts.backends.links.listLinks(), this.opts.backends.links.listAddresses()]);
    let j = this.journal;
    for (const name of j.pending) {
      const link = links.find((l) => l.name === name);
      if (link?.kind === 'bridge' && link.mac === bridgeMac(name)) j = adopt(j, name, link.index);
    }
    j = prune(j, links, addresses);
    if (j !== this.journal) {
      this.journal = j;
      await this.opts.save(j);
    }
    this.table = await this.opts.backends.firewall.list();
  }

  /** The steps that would take the networks in `scope` to their targets (nothing is changed). */
  async plan(_lock: Lock, targets: readonly Target[], scope: Scope): Promise<{ steps: PlannedStep[]; desired: Desired }> {
    const d = desired(targets, this.opts.contributors);
    const o = await this.observe(d, scope);
    return { steps: diff(d, o, scope), desired: d };
  }

  /** Bring the networks in `scope` to their targets. Throws PlanError or ApplyError; a failed rollback-mode run changed nothing. */
  async converge(lock: Lock, targets: readonly Target[], scope: Scope, mode: Mode): Promise<void> {
    const { steps } = await this.plan(lock, targets, scope);
    if (steps.length === 0) return;
    if (mode === 'rollback') await this.applier.all(steps);
    else await this.applier.bestEffort(steps);
  }

  /**
   * Does vnet's table hold, by content, what these targets want? Lists the table afresh (someone
   * else may have changed it) and keeps the listing.
   */
  async firewallIntact(_lock: Lock, targets: readonly Target[]): Promise<boolean> {
    this.table = await this.opts.backends.firewall.list();
    const parts = [...desired(targets, this.opts.contributors).networks.values()].flatMap((n) => (n.firewall ? [n.firewall] : []));
    if (parts.length === 0) return !this.table.exists;
    if (!baseIntact(this.table) || !parts.every((p) => partIntact(this.table!, p))) return false;
    const st = strays(this.table, parts);
    return st.chains.length === 0 && st.elements.length === 0;
  }

  /**
   * What diff() needs to see. Link sysctls are read for the networks in scope only (diff plans no
   * other network's link): reading every network's made each step slower the more were up.
   */
  private async observe(d: Desired, scope: Scope): Promise<Observed> {
    const b = this.opts.backends;
    const [links, addresses, routes] = await Promise.all([b.links.listLinks(), b.links.listAddresses(), b.links.listRoutes()]);
    const keys = new Set<string>([...d.sysctls.map((s) => s.key), ...this.journal.sysctls.keys()]);
    for (const n of d.networks.values()) if (scope.names.has(n.name)) for (const s of n.linkSysctls) keys.add(s.key);
    for (const rule of d.interfaceSysctls) for (const link of hostInterfaces(links, this.journal.owned)) keys.add(interfaceKey(link.name, rule.name));
    const sysctls = new Map<string, string>();
    const values = await Promise.all([...keys].map(async (key) => [key, await b.sysctl.read(key)] as const));
    for (const [key, v] of values) if (v !== undefined) sysctls.set(key, v);
    this.table ??= await b.firewall.list();
    const hostFirewalls = new Map<string, ReadonlySet<string>>();
    for (const fw of b.hostFirewalls ?? []) hostFirewalls.set(fw.name, await fw.bound());
    let hostDns: Map<string, LinkDns> | undefined;
    const inScope = [...d.networks.values()].some((n) => scope.names.has(n.name));
    if (b.hostDns && inScope && (await b.hostDns.available())) {
      hostDns = new Map();
      for (const n of d.networks.values()) {
        const link = scope.names.has(n.name) ? links.find((l) => l.name === n.spec.bridge.name) : undefined;
        const state = link ? await b.hostDns.state(link.index) : undefined;
        if (state) hostDns!.set(n.spec.bridge.name, state);
      }
    }
    return { links, addresses, routes, sysctls, firewall: this.table, dhcp: b.dhcp.running(), hostFirewalls, hostDns, journal: this.journal };
  }
}
