/**
 * The applier: carries out planned steps with the kernel-facing modules. No policy
 * here: what to do was decided by the planner. Bring-up plans roll back on failure;
 * teardown plans keep going and report every error at the end.
 */
import type { Logger } from 'pino';
import type { Rtnl } from '../netlink/links.js';
import { buildRuleset, type NatNetwork } from '../nat/ruleset.js';
import type { Nft } from '../nat/nft.js';
import type { Action, PlannedStep, Step } from '../plan/planner.js';
import { failpoint } from '../sys/failpoint.js';
import { disableIpv6, setIpv4Forwarding } from '../sys/sysctl.js';

export interface ApplyContext {
  rtnl: Rtnl;
  nft: Nft;
  log: Logger;
  startDnsmasq(network: string): Promise<void>;
  stopDnsmasq(network: string): Promise<void>;
  /** told after each ruleset apply, so the daemon knows what is in force */
  rulesetApplied(networks: NatNetwork[]): void;
  /**
   * write-ahead bookkeeping: called before and after every step, including rollback steps;
   * afterStep also when the step failed (ok false: it may have half happened)
   */
  beforeStep(step: Step): Promise<void>;
  afterStep(step: Step, ok: boolean): Promise<void>;
}

type Executors = { [A in Action]: (step: Extract<Step, { action: A }>, ctx: ApplyContext) => Promise<void> };

async function indexOf(ctx: ApplyContext, bridge: string): Promise<number> {
  const link = await ctx.rtnl.getLinkByName(bridge);
  if (!link) throw new Error(`interface ${bridge} not found`);
  return link.index;
}

const executors: Executors = {
  'create-bridge': async (s, ctx) => {
    await ctx.rtnl.createBridge(s.bridge, s.mtu === undefined ? { mac: s.mac } : { mac: s.mac, mtu: s.mtu });
  },
  'disable-ipv6': async (s) => {
    await disableIpv6(s.bridge);
  },
  'delete-bridge': async (s, ctx) => {
    const link = await ctx.rtnl.getLinkByName(s.bridge);
    if (link) await ctx.rtnl.deleteLink(link.index);
  },
  'add-address': async (s, ctx) => {
    await ctx.rtnl.addAddress4(await indexOf(ctx, s.bridge), s.address, s.prefix);
  },
  'delete-address': async (s, ctx) => {
    const link = await ctx.rtnl.getLinkByName(s.bridge);
    if (link) await ctx.rtnl.delAddress4(link.index, s.address, s.prefix);
  },
  'set-link': async (s, ctx) => {
    await ctx.rtnl.setUp(await indexOf(ctx, s.bridge), s.up);
  },
  'apply-ruleset': async (s, ctx) => {
    await ctx.nft.apply(buildRuleset(s.networks));
    ctx.rulesetApplied(s.networks);
  },
  'set-forwarding': async (s) => {
    await setIpv4Forwarding(s.enabled);
  },
  'start-dnsmasq': async (s, ctx) => ctx.startDnsmasq(s.network),
  'stop-dnsmasq': async (s, ctx) => ctx.stopDnsmasq(s.network),
};

/**
 * One step: record the intent, carry it out, record the result (success or failure). `phase`
 * names the crash points between them for the restart tests ("up:after:add-address").
 */
export async function execute(step: Step, ctx: ApplyContext, phase: 'up' | 'down' | 'undo'): Promise<void> {
  const fn = executors[step.action] as (s: Step, c: ApplyContext) => Promise<void>;
  ctx.log.debug({ step }, describe(step));
  await ctx.beforeStep(step);
  try {
    failpoint(`${phase}:before:${step.action}`);
    await fn(step, ctx);
    failpoint(`${phase}:after:${step.action}`);
  } catch (err) {
    // the step's own error is the one reported; a failed record of it is only logged
    await ctx.afterStep(step, false).catch((e) => ctx.log.error({ err: e, step }, `could not record the failure of ${describe(step)}`));
    throw err;
  }
  await ctx.afterStep(step, true);
}

export function describe(step: Step): string {
  switch (step.action) {
    case 'create-bridge':
    case 'delete-bridge':
    case 'disable-ipv6':
      return `${step.action} ${step.bridge}`;
    case 'add-address':
    case 'delete-address':
      return `${step.action} ${step.address}/${step.prefix} on ${step.bridge}`;
    case 'set-link':
      return `set ${step.bridge} ${step.up ? 'up' : 'down'}`;
    case 'apply-ruleset':
      return `apply nft ruleset for [${step.networks.map((n) => n.bridge).join(', ')}]`;
    case 'set-forwarding':
      return `set net.ipv4.ip_forward=${step.enabled ? 1 : 0}`;
    case 'start-dnsmasq':
    case 'stop-dnsmasq':
      return `${step.action} for ${step.network}`;
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

/** Run a bring-up plan; on failure undo what was done (newest first) and throw. */
export async function applyAll(plan: PlannedStep[], ctx: ApplyContext): Promise<void> {
  const done: PlannedStep[] = [];
  for (const p of plan) {
    try {
      await execute(p.step, ctx, 'up');
      done.push(p);
    } catch (err) {
      ctx.log.warn({ err, step: p.step }, `step failed: ${describe(p.step)}; rolling back ${done.length} step(s)`);
      // The failed step may have half happened (a ruleset applied, then an error): undo it
      // too; undos are idempotent. Not a create that failed because the name was taken:
      // that bridge is somebody else's.
      const selfUndo = (err as { errno?: string }).errno === 'EEXIST' ? [] : [p];
      for (const d of [...selfUndo, ...done.reverse()]) {
        if (!d.undo) continue;
        try {
          await execute(d.undo, ctx, 'undo');
        } catch (undoErr) {
          ctx.log.error({ err: undoErr, step: d.undo }, `rollback step failed: ${describe(d.undo)}`);
        }
      }
      const msg = err instanceof Error ? err.message : String(err);
      throw new ApplyError(`${describe(p.step)} failed: ${msg}`, p.step, { cause: err });
    }
  }
}

/** Run a teardown plan to the end; throws one error listing every failed step. */
export async function applyBestEffort(plan: PlannedStep[], ctx: ApplyContext): Promise<void> {
  const failures: string[] = [];
  for (const p of plan) {
    try {
      await execute(p.step, ctx, 'down');
    } catch (err) {
      failures.push(`${describe(p.step)}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  if (failures.length) throw new Error(`teardown incomplete: ${failures.join('; ')}`);
}
