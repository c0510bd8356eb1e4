/**
 * diff(): the steps that take the host from what it holds (Observed) to what it should hold
 * (Desired), for the networks in scope. Pure. Bring-up steps carry their undo; the order is
 * the one a careful admin would follow: servers and rules go before the links they use, links
 * and addresses come before the rules and servers that use them.
 */
import type { Desired, DesiredNetwork, Sysctl } from '../desired/model.js';
import { chainsOf } from '../firewall/rules.js';
import { baseIntact, changePart, holdsAny, partIntact, rebuild, removeStrays, simulate, strays, type Part, type TableState } from '../firewall/table.js';
import { VnetError } from '../api/errors.js';
import { describeConflict, subnetConflict } from './conflicts.js';
import { addedAddresses } from './journal.js';
import { sameDns } from '../hostdns/resolved-api.js';
import type { Observed } from './observed.js';
import type { PlannedStep } from './steps.js';

/** A network that cannot be made as asked: EEXIST (its bridge name is taken), EADDRINUSE (its subnet is in use), ENODEV (a bridge it needs is missing). */
export class PlanError extends VnetError {
  override name = 'PlanError';
}

/**
 * Which networks a diff may change; `sweep` also removes what of vnet's no network accounts for
 * (rules and bridges left by a crash or by a definition that was deleted).
 */
export interface Scope {
  names: ReadonlySet<string>;
  sweep: boolean;
}

const inScope = (scope: Scope, name: string) => scope.names.has(name);

/**
 * Refuse a network whose bridge or subnet something else on the host already uses, or whose
 * existing bridge (forward = "bridge") is missing or no bridge.
 */
export function checkConflicts(n: DesiredNetwork, o: Observed): void {
  const { spec } = n;
  const bridge = spec.bridge.name;
  const link = o.links.find((l) => l.name === bridge);
  if (spec.bridge.managed && link && o.journal.owned.get(bridge) !== link.index) {
    throw new PlanError(
      'EEXIST',
      `network "${spec.name}": interface ${bridge} already exists and was not created by vnet; ` +
        `vnet never adopts or deletes it (is libvirt's network running? try \`virsh net-destroy\`, or choose another \`bridge\` in ${spec.source})`,
    );
  }
  if (!spec.bridge.managed && !link)
    throw new PlanError('ENODEV', `network "${spec.name}": bridge ${bridge} does not exist; forward = "bridge" uses a bridge vnet does not create (make it first, e.g. with NetworkManager)`);
  if (!spec.bridge.managed && link?.kind !== 'bridge')
    throw new PlanError('EINVAL', `network "${spec.name}": interface ${bridge} is not a bridge; forward = "bridge" puts taps only on a bridge`);
  // a subnet already up on the bridge stays up: what overlaps it since is reported, not refused
  const c = subnetConflict(spec, o, { newOnly: true });
  if (c) throw new PlanError('EADDRINUSE', `network "${spec.name}": ${describeConflict(c)}; choose another \`${c.key}\` in ${spec.source}`);
}

/**
 * Link, link sysctls, MTU (of the bridge and every tap on it), addresses and the UP flag of one
 * network. A bridge vnet does not own (forward = "bridge") is never created, deleted, raised or
 * lowered, and loses only the addresses vnet recorded adding to it.
 */
function linkSteps(n: DesiredNetwork, o: Observed): { down: PlannedStep[]; up: PlannedStep[] } {
  const down: PlannedStep[] = [];
  const up: PlannedStep[] = [];
  const name = n.name;
  const bridge = n.spec.bridge.name;
  const managed = n.spec.bridge.managed;
  const link = o.links.find((l) => l.name === bridge);
  const owned = !!link && o.journal.owned.get(bridge) === link.index;
  const have = link ? o.addresses.filter((a) => a.index === link.index) : [];
  const added = addedAddresses(o.journal, bridge);
  // what vnet may take off the bridge: anything on its own, only what it added on somebody else's
  const removable = have.filter((a) => (managed ? !(a.family === 6 && a.address.startsWith('fe80:')) : added.has(`${a.address}/${a.prefix}`)));
  const removeAddress = (a: { address: string; prefix: number }): PlannedStep => ({ step: { kind: 'delete-address', network: name, bridge, address: a.address, prefix: a.prefix } });
  if (!n.bridge) {
    if (link && owned && managed) down.push({ step: { kind: 'delete-bridge', network: name, bridge } });
    if (link && !managed) down.push(...removable.map(removeAddress));
    return { down, up };
  }
  const want = n.bridge;
  if (!link) {
    if (!want.managed) throw new PlanError('ENODEV', `network "${name}": bridge ${bridge} does not exist`);
    up.push({
      step: { kind: 'create-bridge', network: name, bridge, mac: want.mac, ...(want.mtu !== undefined ? { mtu: want.mtu } : {}) },
      undo: { kind: 'delete-bridge', network: name, bridge },
    });
  } else if (want.mtu !== undefined && link.mtu !== want.mtu) {
    up.push({ step: { kind: 'set-link', network: name, bridge, mtu: want.mtu } });
  }
  // a tap copies the bridge's MTU when it is attached; one attached before the MTU changed follows it
  if (link && want.mtu !== undefined) {
    for (const tap of o.links) if (tap.master === link.index && tap.kind === 'tun' && tap.mtu !== want.mtu) up.push({ step: { kind: 'set-link', network: name, bridge: tap.name, mtu: want.mtu } });
  }
  for (const s of n.linkSysctls) {
    // a bridge about to be made has the kernel's defaults
    if (link && o.sysctls.get(s.key) === s.value) continue;
    up.push({ step: { kind: 'set-sysctl', key: s.key, value: s.value } });
  }
  for (const a of removable) if (!n.addresses.some((w) => w.address === a.address && w.prefix === a.prefix)) down.push(removeAddress(a));
  for (const w of n.addresses) {
    if (have.some((a) => a.address === w.address && a.prefix === w.prefix)) continue;
    const addr = { network: name, bridge, address: w.address, prefix: w.prefix, ...(managed ? {} : { foreign: true }) };
    up.push({ step: { kind: 'add-address', ...addr }, undo: { kind: 'delete-address', network: name, bridge, address: w.address, prefix: w.prefix } });
  }
  if (managed && !link?.up) up.push({ step: { kind: 'set-link', network: name, bridge, up: true } });
  return { down, up };
}

/** The firewall steps: per network in scope, or the whole table when its base is not vnet's. */
function firewallSteps(d: Desired, o: Observed, scope: Scope): { down: PlannedStep[]; up: PlannedStep[] } {
  const down: PlannedStep[] = [];
  const up: PlannedStep[] = [];
  const fw: TableState = o.firewall;
  const nets = [...d.networks.values()];
  const wanted: Part[] = nets.flatMap((n) => (n.firewall ? [n.firewall] : []));
  if (wanted.length === 0) {
    if (fw.exists) down.push({ step: { kind: 'firewall', what: 'remove the vnet table', tx: rebuild([]) } });
    return { down, up };
  }
  if (!baseIntact(fw)) {
    const changed = nets.filter((n) => inScope(scope, n.name) && n.firewall).map((n) => n.firewall!);
    const before = wanted.filter((p) => !changed.includes(p));
    up.push({ step: { kind: 'firewall', what: 'build the vnet table', tx: rebuild(wanted) }, undo: { kind: 'firewall', what: 'restore the vnet table', tx: rebuild(before) } });
    return { down, up };
  }
  let state = fw;
  for (const n of nets) {
    if (!inScope(scope, n.name)) continue;
    const names = chainsOf(n.spec.bridge.name);
    if (n.firewall) {
      if (partIntact(state, n.firewall)) continue;
      const tx = changePart(state, names, n.firewall);
      const after = simulate(state, tx);
      up.push({ step: { kind: 'firewall', what: `rules of ${n.name}`, tx }, undo: { kind: 'firewall', what: `remove the rules of ${n.name}`, tx: changePart(after, names) } });
      state = after;
    } else if (holdsAny(state, names)) {
      const tx = changePart(state, names);
      down.push({ step: { kind: 'firewall', what: `remove the rules of ${n.name}`, tx } });
      state = simulate(state, tx);
    }
  }
  if (scope.sweep) {
    const st = strays(state, wanted);
    if (st.chains.length || st.elements.length) down.push({ step: { kind: 'firewall', what: 'remove rules no network accounts for', tx: removeStrays(st) } });
  }
  return { down, up };
}

/** The per-interface sysctl `name` of interface `ifname`. */
export function interfaceKey(ifname: string, name: string): string {
  return `net/ipv6/conf/${ifname}/${name}`;
}

const INTERFACE_KEY = /^net\/ipv6\/conf\/([^/]+)\/([^/]+)$/;

/**
 * The interfaces whose interface sysctls count: the host's own, not vnet's bridges (their link
 * sysctls are vnet's), bridge ports (a tap or a veth in a bridge hands its packets to the bridge;
 * its own IPv6 settings do nothing) nor loopback.
 */
export function hostInterfaces<L extends { name: string; master?: number }>(links: readonly L[], owned: ReadonlyMap<string, number>): L[] {
  return links.filter((l) => l.master === undefined && l.name !== 'lo' && !owned.has(l.name));
}

/**
 * The interface sysctls wanted now: each observed interface key that holds `from`, or that vnet
 * changed from `from` (journaled) and that still exists, is wanted at `value`.
 */
function interfaceWants(d: Desired, o: Observed): Sysctl[] {
  const out: Sysctl[] = [];
  for (const rule of d.interfaceSysctls) {
    const host = rule.with === undefined ? undefined : d.sysctls.find((s) => s.key === rule.with);
    if (host && o.sysctls.get(host.key) === host.value && !o.journal.sysctls.has(host.key)) continue;
    for (const [key, now] of o.sysctls) {
      const m = INTERFACE_KEY.exec(key);
      if (!m || m[2] !== rule.name || m[1] === 'all' || m[1] === 'default' || o.journal.owned.has(m[1]!)) continue;
      if (now === rule.from || o.journal.sysctls.get(key) === rule.from) out.push({ key, value: rule.value });
    }
  }
  return out;
}

/**
 * Host-wide sysctls: set what a network needs (journaling the old value), restore what none needs
 * any more. Interface sysctls go up before the host-wide ones (accept_ra = 2 before forwarding is
 * on) and are restored after them.
 */
function sysctlSteps(d: Desired, o: Observed): { down: PlannedStep[]; up: PlannedStep[] } {
  const down: PlannedStep[] = [];
  const up: PlannedStep[] = [];
  const wanted = [...interfaceWants(d, o), ...d.sysctls];
  for (const s of wanted) {
    const now = o.sysctls.get(s.key);
    if (now === s.value) continue;
    const restore = o.journal.sysctls.get(s.key) ?? now;
    up.push({
      step: { kind: 'set-sysctl', key: s.key, value: s.value, ...(restore !== undefined ? { restore } : {}) },
      ...(restore !== undefined ? { undo: { kind: 'set-sysctl' as const, key: s.key, value: restore } } : {}),
    });
  }
  for (const [key, old] of o.journal.sysctls) {
    if (wanted.some((s) => s.key === key)) continue;
    down.push({ step: { kind: 'set-sysctl', key, value: old } });
  }
  const perInterface = (p: PlannedStep) => {
    const m = p.step.kind === 'set-sysctl' ? INTERFACE_KEY.exec(p.step.key) : null;
    return m && m[1] !== 'all' && m[1] !== 'default' ? 1 : 0;
  };
  down.sort((a, b) => perInterface(a) - perInterface(b));
  return { down, up };
}

/** Host firewalls (firewalld, Docker) let an up network's bridge through, and only while it is up. */
function hostFirewallSteps(n: DesiredNetwork, o: Observed): { down: PlannedStep[]; up: PlannedStep[] } {
  const down: PlannedStep[] = [];
  const up: PlannedStep[] = [];
  const bridge = n.spec.bridge.name;
  for (const [integration, bound] of o.hostFirewalls) {
    const step = { kind: 'host-firewall' as const, integration, network: n.name, bridge, mode: n.spec.forward.mode };
    if (n.hostFirewall && !bound.has(bridge)) up.push({ step: { ...step, bind: true }, undo: { ...step, bind: false } });
    if (!n.hostFirewall && bound.has(bridge)) down.push({ step: { ...step, bind: false } });
  }
  return { down, up };
}

/**
 * The host's resolver sends names under an up network's domain to its DNS server on the bridge;
 * a bridge that holds settings while it should not has them reverted (before it goes). Only on
 * vnet's own bridges: an existing bridge's resolver settings are its owner's (NetworkManager's).
 */
function hostDnsSteps(n: DesiredNetwork, o: Observed): { down: PlannedStep[]; up: PlannedStep[] } {
  const bridge = n.spec.bridge.name;
  if (!o.hostDns || !n.spec.bridge.managed) return { down: [], up: [] };
  // a bridge about to be made holds nothing yet
  const have = o.hostDns.get(bridge) ?? { servers: [], domains: [] };
  const step = { kind: 'host-dns' as const, network: n.name, bridge };
  if (n.hostDns) {
    if (sameDns(have, n.hostDns)) return { down: [], up: [] };
    return { down: [], up: [{ step: { ...step, dns: n.hostDns }, undo: step }] };
  }
  return { down: have.servers.length || have.domains.length ? [{ step }] : [], up: [] };
}

function dhcpSteps(n: DesiredNetwork, o: Observed): { down: PlannedStep[]; up: PlannedStep[] } {
  const running = o.dhcp.get(n.name);
  const stop = { kind: 'stop-dhcp' as const, network: n.name };
  if (!n.dhcp) return { down: running ? [{ step: stop }] : [], up: [] };
  if (running && running.text === n.dhcp.text && running.confPath === n.dhcp.confPath) return { down: [], up: [] };
  return { down: running ? [{ step: stop }] : [], up: [{ step: { kind: 'start-dhcp', network: n.name, config: n.dhcp }, undo: stop }] };
}

/** Every step from `o` to `d` for the networks in `scope`. Throws PlanError when a network conflicts. */
export function diff(d: Desired, o: Observed, scope: Scope): PlannedStep[] {
  const nets = [...d.networks.values()].filter((n) => inScope(scope, n.name));
  for (const n of nets) if (n.level !== 'down') checkConflicts(n, o);
  const links = nets.map((n) => linkSteps(n, o));
  const dhcp = nets.map((n) => dhcpSteps(n, o));
  const hostFw = nets.map((n) => hostFirewallSteps(n, o));
  const hostDns = nets.map((n) => hostDnsSteps(n, o));
  const fw = firewallSteps(d, o, scope);
  const sys = sysctlSteps(d, o);
  const orphans: PlannedStep[] = [];
  if (scope.sweep) {
    // host firewall bindings of bridges no up network has
    const wanted = new Set([...d.networks.values()].filter((n) => n.hostFirewall).map((n) => n.spec.bridge.name));
    for (const [integration, bound] of o.hostFirewalls) {
      for (const bridge of bound) {
        if (wanted.has(bridge) || nets.some((n) => n.spec.bridge.name === bridge)) continue;
        orphans.push({ step: { kind: 'host-firewall', integration, network: '', bridge, bind: false, mode: 'nat' } });
      }
    }
    // addresses vnet put on bridges it does not own, for networks no definition wants any more
    for (const [bridge, cidrs] of o.journal.addresses) {
      if ([...d.networks.values()].some((n) => n.spec.bridge.name === bridge)) continue;
      const link = o.links.find((l) => l.name === bridge);
      for (const a of o.addresses) {
        if (a.index !== link?.index || !cidrs.has(`${a.address}/${a.prefix}`)) continue;
        orphans.push({ step: { kind: 'delete-address', network: '', bridge, address: a.address, prefix: a.prefix } });
      }
    }
    // bridges vnet made for networks no definition wants any more
    for (const [bridge, index] of o.journal.owned) {
      if ([...d.networks.values()].some((n) => n.spec.bridge.name === bridge)) continue;
      if (o.links.some((l) => l.name === bridge && l.index === index)) orphans.push({ step: { kind: 'delete-bridge', network: '', bridge } });
    }
  }
  return [
    ...dhcp.flatMap((x) => x.down),
    ...hostFw.flatMap((x) => x.down),
    ...hostDns.flatMap((x) => x.down),
    ...fw.down,
    ...sys.down,
    ...links.flatMap((x) => x.down),
    ...orphans,
    ...links.flatMap((x) => x.up),
    ...fw.up,
    ...hostFw.flatMap((x) => x.up),
    ...sys.up,
    ...dhcp.flatMap((x) => x.up),
    ...hostDns.flatMap((x) => x.up),
  ];
}
