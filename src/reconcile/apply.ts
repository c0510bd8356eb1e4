/**
 * The applier: carries out planned steps through the backends and tells the journal about each
 * one before and after it runs. No policy: what to do was decided by diff(). A bring-up rolls
 * back on failure (the undo of every step done, newest first); a teardown keeps going and reports
 * every failure at the end.
 */
import type { Logger } from 'pino';
import { errnoOf } from '../netlink/errors.js';
import { failpoint } from '../sys/failpoint.js';
import type { Backends } from './backends.js';
import type { Journal, JournalEvent } from './journal.js';
import { describe, type PlannedStep, type Step, type StepKind } from './steps.js';

export type Phase = 'up' | 'down' | 'undo';

/** What the applier needs besides the backends: the journal, kept and saved by the reconciler. */
export interface JournalSink {
  journal(): Journal;
  /** record one event of one step (saves when the journal changed) */
  record(step: Step, event: JournalEvent): Promise<void>;
  /** the firewall transaction of a step went through */
  firewallApplied(step: Extract<Step, { kind: 'firewall' }>): void;
}

/** A step that failed after changing something its undo must take back (a bridge made, then an error). */
class HalfDone extends Error {
  // index: a bridge's ifindex when the step made one, else -1
  override name = 'HalfDone';
  constructor(
    readonly index: number,
    options: { cause: unknown },
  ) {
    super((options.cause as Error)?.message ?? String(options.cause), options);
  }
}

type Executors = { [K in StepKind]: (step: Extract<Step, { kind: K }>, b: Backends, j: JournalSink) => Promise<number | void> };

async function indexOf(b: Backends, bridge: string): Promise<number> {
  const link = await b.links.getLinkByName(bridge);
  if (!link) throw new Error(`interface ${bridge} not found`);
  return link.index;
}

const executors: Executors = {
  'create-bridge': async (s, b) => {
    try {
      return (await b.links.createBridge(s.bridge, { mac: s.mac, ...(s.mtu !== undefined ? { mtu: s.mtu } : {}) })).index;
    } catch (err) {
      // made, then failed (not EEXIST: then the name is somebody else's): it carries our MAC
      if (errnoOf(err) !== 'EEXIST') {
        const l = await b.links.getLinkByName(s.bridge).catch(() => undefined);
        if (l?.kind === 'bridge' && l.mac === s.mac) throw new HalfDone(l.index, { cause: err });
      }
      throw err;
    }
  },
  'delete-bridge': async (s, b, j) => {
    const link = await b.links.getLinkByName(s.bridge);
    // only ever a bridge vnet made, whatever the plan says
    if (link && j.journal().owned.get(s.bridge) === link.index) await b.links.deleteLink(link.index);
  },
  'set-link': async (s, b) => {
    await b.links.configureLink(await indexOf(b, s.bridge), { ...(s.mtu !== undefined ? { mtu: s.mtu } : {}), ...(s.up !== undefined ? { up: s.up } : {}) });
  },
  'add-address': async (s, b) => b.links.addAddress(await indexOf(b, s.bridge), s.address, s.prefix),
  'delete-address': async (s, b) => {
    const link = await b.links.getLinkByName(s.bridge);
    try {
      if (link) await b.links.delAddress(link.index, s.address, s.prefix);
    } catch (err) {
      // gone already (its owner removed it): what the step wanted
      if (errnoOf(err) !== 'EADDRNOTAVAIL') throw err;
    }
  },
  'set-sysctl': async (s, b) => {
    try {
      await b.sysctl.write(s.key, s.value);
    } catch (err) {
      // putting back a value of an interface that is gone since: nothing left to restore
      const iface = /^net\/ipv6\/conf\/([^/]+)\//.exec(s.key)?.[1];
      const gone = (err as NodeJS.ErrnoException).code === 'ENOENT' && s.restore === undefined && iface !== undefined && iface !== 'all' && iface !== 'default';
      if (!gone) throw err;
    }
  },
  firewall: async (s, b, j) => {
    await b.firewall.apply(s.tx);
    j.firewallApplied(s);
  },
  'host-firewall': async (s, b) => {
    const fw = b.hostFirewalls?.find((f) => f.name === s.integration);
    if (!fw) throw new Error(`no host firewall named ${s.integration}`);
    if (s.bind) await fw.bind(s.bridge, s.mode);
    else await fw.unbind(s.bridge);
  },
  'host-dns': async (s, b) => {
    if (!b.hostDns) return;
    const link = await b.links.getLinkByName(s.bridge);
    // a bridge that is gone took its resolver settings with it
    if (!link) return;
    if (s.dns) await b.hostDns.register(link.index, s.dns);
    else await b.hostDns.revert(link.index);
  },
  'start-dhcp': async (s, b) => b.dhcp.start(s.config),
  'stop-dhcp': async (s, b) => b.dhcp.stop(s.network),
};

/** What a step acts on, for crash points: a bridge, a sysctl key, a network. */
function subject(step: Step): string {
  switch (step.kind) {
    case 'set-sysctl':
      return step.key;
    case 'firewall':
      return step.what;
    case 'start-dhcp':
    case 'stop-dhcp':
      return step.network;
    case 'host-firewall':
      return `${step.integration}:${step.bridge}`;
    case 'host-dns':
      return `host-dns:${step.bridge}`;
    default:
      return step.bridge;
  }
}

export class ApplyError extends Error {
  override name = 'ApplyError';
  constructor(
    message: string,
    readonly failedStep: Step,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export class Applier {
  constructor(
    private readonly backends: Backends,
    private readonly sink: JournalSink,
    private readonly log: Logger,
  ) {}

  /** One step: journal the intent, carry it out, journal the result. `phase` names the crash points. */
  private async execute(step: Step, phase: Phase): Promise<void> {
    const fn = executors[step.kind] as (s: Step, b: Backends, j: JournalSink) => Promise<number | void>;
    this.log.debug({ step: describe(step) }, 'step');
    await this.sink.record(step, { phase: 'before' });
    let index: number | void;
    const at = (when: string) => [`${phase}:${when}:${step.kind}`, `${phase}:${when}:${step.kind}@${subject(step)}`];
    try {
      failpoint(...at('before'));
      index = await fn(step, this.backends, this.sink);
    } catch (err) {
      const event: JournalEvent = err instanceof HalfDone ? { phase: 'done', index: err.index } : { phase: 'failed' };
      // the step's own error is the one reported; a failed record of it is only logged
      await this.sink.record(step, event).catch((e) => this.log.error({ err: e }, `could not record the failure of ${describe(step)}`));
      throw err;
    }
    // it happened: whatever fails from here on, its undo must run too
    const done: JournalEvent = { phase: 'done', ...(typeof index === 'number' ? { index } : {}) };
    try {
      failpoint(...at('after'));
    } catch (err) {
      await this.sink.record(step, done).catch(() => undefined);
      throw new HalfDone(typeof index === 'number' ? index : -1, { cause: err });
    }
    try {
      await this.sink.record(step, done);
    } catch (err) {
      throw new HalfDone(typeof index === 'number' ? index : -1, { cause: err });
    }
  }

  /** Run a bring-up plan; on failure undo what was done (newest first) and throw. */
  async all(plan: readonly PlannedStep[]): Promise<void> {
    const done: PlannedStep[] = [];
    for (const p of plan) {
      try {
        await this.execute(p.step, 'up');
        done.push(p);
      } catch (err) {
        this.log.warn({ err, step: describe(p.step) }, `step failed; rolling back ${done.length} step(s)`);
        const undo = err instanceof HalfDone ? [p, ...done.reverse()] : done.reverse();
        for (const d of undo) {
          if (!d.undo) continue;
          try {
            await this.execute(d.undo, 'undo');
          } catch (undoErr) {
            this.log.error({ err: undoErr }, `rollback step failed: ${describe(d.undo)}`);
          }
        }
        const cause = err instanceof HalfDone ? err.cause : err;
        throw new ApplyError(`${describe(p.step)} failed: ${(cause as Error)?.message ?? String(cause)}`, p.step, { cause });
      }
    }
  }

  /** Run a teardown plan to the end; throws one error listing every failed step. */
  async bestEffort(plan: readonly PlannedStep[]): Promise<void> {
    const failures: string[] = [];
    for (const p of plan) {
      try {
        await this.execute(p.step, 'down');
      } catch (err) {
        failures.push(`${describe(p.step)}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    if (failures.length) throw new Error(`teardown incomplete: ${failures.join('; ')}`);
  }
}
