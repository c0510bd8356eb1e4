/**
 * The planner: definition + observed kernel state → the steps that bring a network
 * to the wanted state. Pure data in, data out; the daemon's applier carries the steps
 * out and, when one fails, runs the `undo` of every step already done, newest first.
 */
import { createHash } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import { cidrsOverlap } from '../config/definition.js';
import type { NetworkDef } from '../model.js';
import type { NatNetwork } from '../nat/ruleset.js';

export interface ObservedLink {
  index: number;
  name: string;
  kind?: string | undefined;
  up: boolean;
}

export interface ObservedAddress {
  index: number;
  address: string;
  prefix: number;
}

export interface ObservedRoute {
  dst: string;
  oif?: number | undefined;
}

export interface Observed {
  links: ObservedLink[];
  addresses: ObservedAddress[];
  routes: ObservedRoute[];
  /** bridges vnet created and still owns (by name) */
  owned: ReadonlySet<string>;
}

export type Step =
  | { action: 'create-bridge'; bridge: string; mac: string; mtu?: number | undefined }
  | { action: 'disable-ipv6'; bridge: string }
  | { action: 'delete-bridge'; bridge: string }
  | { action: 'add-address'; bridge: string; address: string; prefix: number }
  | { action: 'delete-address'; bridge: string; address: string; prefix: number }
  | { action: 'set-link'; bridge: string; up: boolean }
  | { action: 'apply-ruleset'; networks: NatNetwork[] }
  | { action: 'set-forwarding'; enabled: boolean }
  | { action: 'start-dnsmasq'; network: string }
  | { action: 'stop-dnsmasq'; network: string };

export type Action = Step['action'];

export interface PlannedStep {
  step: Step;
  /** how to take this step back if a later one fails */
  undo?: Step;
}

export class PlanError extends Error {
  override name = 'PlanError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function natNetworkOf(def: NetworkDef): NatNetwork {
  return { bridge: def.bridge, cidr: def.ipv4.cidr, address: def.ipv4.address };
}

/** Refuse a network whose bridge or subnet something else on the host already uses. */
export function checkConflicts(def: NetworkDef, observed: Observed): void {
  const link = observed.links.find((l) => l.name === def.bridge);
  if (link && !observed.owned.has(def.bridge)) {
    throw new PlanError(
      'EEXIST',
      `network "${def.name}": interface ${def.bridge} already exists and was not created by vnet; ` +
        `vnet never adopts or deletes it (is libvirt's network running? try \`virsh net-destroy\`, or choose another \`bridge\` in ${def.source})`,
    );
  }
  const ourIndex = link?.index;
  const nameOf = (index: number | undefined) => observed.links.find((l) => l.index === index)?.name ?? `ifindex ${index}`;
  for (const route of observed.routes) {
    if (route.dst === '0.0.0.0/0' || route.oif === ourIndex) continue;
    if (cidrsOverlap(route.dst, def.ipv4.cidr)) {
      throw new PlanError(
        'EADDRINUSE',
        `network "${def.name}": subnet ${def.ipv4.cidr} is already in use by interface ${nameOf(route.oif)} (route ${route.dst}); ` +
          `choose another \`address\` in ${def.source}`,
      );
    }
  }
  for (const a of observed.addresses) {
    if (a.index === ourIndex) continue;
    if (ipaddr.IPv4.parse(a.address).match(ipaddr.IPv4.parse(def.ipv4.network), def.ipv4.prefix)) {
      throw new PlanError(
        'EADDRINUSE',
        `network "${def.name}": subnet ${def.ipv4.cidr} is already in use by interface ${nameOf(a.index)} (address ${a.address}/${a.prefix}); ` +
          `choose another \`address\` in ${def.source}`,
      );
    }
  }
}

/**
 * A fixed, locally administered MAC per bridge name (52:54:00, as libvirt). Without one a
 * bridge takes the lowest MAC of its ports, and a tap would lend it its fe: address.
 */
export function bridgeMac(bridge: string): string {
  const h = createHash('sha256').update(`vnet:${bridge}`).digest();
  return ['52', '54', '00', ...[h[0]!, h[1]!, h[2]!].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

function bridgeSteps(def: NetworkDef, observed: Observed): PlannedStep[] {
  const link = observed.links.find((l) => l.name === def.bridge);
  const steps: PlannedStep[] = [];
  if (!link) {
    steps.push({
      step: { action: 'create-bridge', bridge: def.bridge, mac: bridgeMac(def.bridge), mtu: def.mtu },
      undo: { action: 'delete-bridge', bridge: def.bridge },
    });
    // IPv4-only networks: no link-local address, nothing for dnsmasq to listen on over IPv6.
    steps.push({ step: { action: 'disable-ipv6', bridge: def.bridge } });
  }
  if (!link?.up) {
    steps.push({ step: { action: 'set-link', bridge: def.bridge, up: true } });
  }
  return steps;
}

function hasAddress(def: NetworkDef, observed: Observed): boolean {
  const link = observed.links.find((l) => l.name === def.bridge);
  return !!link && observed.addresses.some((a) => a.index === link.index && a.address === def.ipv4.address && a.prefix === def.ipv4.prefix);
}

/**
 * Bring `def` fully up. `natBefore` is the NAT set now in force, `natAfter` the set
 * with this network in it.
 */
export function planUp(def: NetworkDef, observed: Observed, nat: { before: NatNetwork[]; after: NatNetwork[] }, forwardingWasOn: boolean): PlannedStep[] {
  checkConflicts(def, observed);
  const steps = bridgeSteps(def, observed);
  const addr = { bridge: def.bridge, address: def.ipv4.address, prefix: def.ipv4.prefix };
  if (!hasAddress(def, observed)) {
    steps.push({ step: { action: 'add-address', ...addr }, undo: { action: 'delete-address', ...addr } });
  }
  steps.push({
    step: { action: 'apply-ruleset', networks: nat.after },
    undo: { action: 'apply-ruleset', networks: nat.before },
  });
  if (!forwardingWasOn) {
    steps.push({ step: { action: 'set-forwarding', enabled: true }, undo: { action: 'set-forwarding', enabled: false } });
  }
  steps.push({
    step: { action: 'start-dnsmasq', network: def.name },
    undo: { action: 'stop-dnsmasq', network: def.name },
  });
  return steps;
}

/** An idle on-demand network with standby = "stub": the bridge alone, UP, no address. */
export function planStub(def: NetworkDef, observed: Observed): PlannedStep[] {
  checkConflicts(def, observed);
  return bridgeSteps(def, observed);
}

/**
 * Take `def` down: to nothing, or to its stub when `toStub`. `restoreForwarding`
 * turns IPv4 forwarding back off when vnet turned it on and no NAT network remains.
 * Teardown steps carry no undo: the applier keeps going past a failed one.
 */
export function planDown(
  def: NetworkDef,
  observed: Observed,
  nat: { after: NatNetwork[] },
  opts: { toStub: boolean; restoreForwarding: boolean; dnsmasqRunning: boolean; rulesetHasIt: boolean },
): PlannedStep[] {
  const steps: PlannedStep[] = [];
  const link = observed.links.find((l) => l.name === def.bridge);
  if (opts.dnsmasqRunning) steps.push({ step: { action: 'stop-dnsmasq', network: def.name } });
  if (opts.rulesetHasIt) steps.push({ step: { action: 'apply-ruleset', networks: nat.after } });
  if (opts.restoreForwarding) steps.push({ step: { action: 'set-forwarding', enabled: false } });
  if (link && observed.owned.has(def.bridge)) {
    if (opts.toStub) {
      for (const a of observed.addresses.filter((x) => x.index === link.index)) {
        steps.push({ step: { action: 'delete-address', bridge: def.bridge, address: a.address, prefix: a.prefix } });
      }
      if (!link.up) steps.push({ step: { action: 'set-link', bridge: def.bridge, up: true } });
    } else {
      steps.push({ step: { action: 'delete-bridge', bridge: def.bridge } });
    }
  }
  return steps;
}
