import { describe, expect, it } from 'vitest';
import { builtinDefault } from '../../src/config/definition.js';
import { bridgeMac, PlanError, planDown, planStub, planUp, type Observed } from '../../src/plan/planner.js';

const def = builtinDefault();
const nat = { bridge: 'virbr0', cidr: '192.168.122.0/24', address: '192.168.122.1' };
const other = { bridge: 'vnbr1', cidr: '10.1.0.0/24', address: '10.1.0.1' };
const base: Observed = {
  links: [
    { index: 1, name: 'lo', kind: undefined, up: true },
    { index: 2, name: 'eth0', kind: 'veth', up: true },
  ],
  addresses: [{ index: 2, address: '198.51.100.2', prefix: 24 }],
  routes: [
    { dst: '0.0.0.0/0', oif: 2 },
    { dst: '198.51.100.0/24', oif: 2 },
  ],
  owned: new Set(),
};

describe('planUp', () => {
  it('from nothing: bridge, up, address, ruleset, forwarding, dnsmasq — each with its undo', () => {
    const plan = planUp(def, base, { before: [other], after: [other, nat] }, false);
    expect(plan).toEqual([
      { step: { action: 'create-bridge', bridge: 'virbr0', mac: bridgeMac('virbr0'), mtu: undefined }, undo: { action: 'delete-bridge', bridge: 'virbr0' } },
      { step: { action: 'disable-ipv6', bridge: 'virbr0' } },
      { step: { action: 'set-link', bridge: 'virbr0', up: true } },
      {
        step: { action: 'add-address', bridge: 'virbr0', address: '192.168.122.1', prefix: 24 },
        undo: { action: 'delete-address', bridge: 'virbr0', address: '192.168.122.1', prefix: 24 },
      },
      { step: { action: 'apply-ruleset', networks: [other, nat] }, undo: { action: 'apply-ruleset', networks: [other] } },
      { step: { action: 'set-forwarding', enabled: true }, undo: { action: 'set-forwarding', enabled: false } },
      { step: { action: 'start-dnsmasq', network: 'default' }, undo: { action: 'stop-dnsmasq', network: 'default' } },
    ]);
  });

  it('from its own stub: only the address and what follows; forwarding left alone when already on', () => {
    const observed: Observed = { ...base, links: [...base.links, { index: 7, name: 'virbr0', kind: 'bridge', up: true }], owned: new Set(['virbr0']) };
    const actions = planUp(def, observed, { before: [], after: [nat] }, true).map((p) => p.step.action);
    expect(actions).toEqual(['add-address', 'apply-ruleset', 'start-dnsmasq']);
  });

  it('refuses a same-named interface vnet did not create (never adopts it)', () => {
    const observed: Observed = { ...base, links: [...base.links, { index: 9, name: 'virbr0', kind: 'bridge', up: true }] };
    expect(() => planUp(def, observed, { before: [], after: [nat] }, true)).toThrow(/virbr0 already exists and was not created by vnet/);
  });

  it('refuses a subnet another interface routes, naming it (libvirt holding 192.168.122.0/24)', () => {
    const observed: Observed = {
      ...base,
      links: [...base.links, { index: 5, name: 'virbr-lv', kind: 'bridge', up: true }],
      routes: [...base.routes, { dst: '192.168.122.0/24', oif: 5 }],
    };
    try {
      planUp(def, observed, { before: [], after: [nat] }, true);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(PlanError);
      expect((e as PlanError).code).toBe('EADDRINUSE');
      expect((e as Error).message).toContain('already in use by interface virbr-lv (route 192.168.122.0/24)');
    }
  });

  it('refuses a host route that contains the network (a /16 over the /24)', () => {
    const observed: Observed = { ...base, routes: [...base.routes, { dst: '192.168.0.0/16', oif: 2 }] };
    expect(() => planUp(def, observed, { before: [], after: [nat] }, true)).toThrow(/in use by interface eth0 \(route 192.168.0.0\/16\)/);
  });

  it('refuses an address inside the subnet on another interface', () => {
    const observed: Observed = { ...base, addresses: [...base.addresses, { index: 2, address: '192.168.122.77', prefix: 32 }] };
    expect(() => planUp(def, observed, { before: [], after: [nat] }, true)).toThrow(/address 192.168.122.77\/32/);
  });

  it('ignores the default route', () => {
    expect(() => planUp(def, base, { before: [], after: [nat] }, true)).not.toThrow();
  });
});

describe('planDown', () => {
  const upObserved: Observed = {
    ...base,
    links: [...base.links, { index: 7, name: 'virbr0', kind: 'bridge', up: true }],
    addresses: [...base.addresses, { index: 7, address: '192.168.122.1', prefix: 24 }],
    routes: [...base.routes, { dst: '192.168.122.0/24', oif: 7 }],
    owned: new Set(['virbr0']),
  };

  it('to nothing: dnsmasq, ruleset without it, forwarding back, bridge', () => {
    const plan = planDown(def, upObserved, { after: [] }, { toStub: false, restoreForwarding: true, dnsmasqRunning: true, rulesetHasIt: true });
    expect(plan.map((p) => p.step)).toEqual([
      { action: 'stop-dnsmasq', network: 'default' },
      { action: 'apply-ruleset', networks: [] },
      { action: 'set-forwarding', enabled: false },
      { action: 'delete-bridge', bridge: 'virbr0' },
    ]);
  });

  it('to stub: keeps the bridge up, drops its address', () => {
    const plan = planDown(def, upObserved, { after: [other] }, { toStub: true, restoreForwarding: false, dnsmasqRunning: true, rulesetHasIt: true });
    expect(plan.map((p) => p.step.action)).toEqual(['stop-dnsmasq', 'apply-ruleset', 'delete-address']);
  });

  it('never deletes a bridge vnet does not own', () => {
    const notOwned = { ...upObserved, owned: new Set<string>() };
    const plan = planDown(def, notOwned, { after: [] }, { toStub: false, restoreForwarding: false, dnsmasqRunning: false, rulesetHasIt: false });
    expect(plan).toEqual([]);
  });
});

describe('bridgeMac', () => {
  it('is stable, locally administered, and differs between bridges', () => {
    expect(bridgeMac('virbr0')).toMatch(/^52:54:00(:[0-9a-f]{2}){3}$/);
    expect(bridgeMac('virbr0')).toBe(bridgeMac('virbr0'));
    expect(bridgeMac('virbr1')).not.toBe(bridgeMac('virbr0'));
  });
});

describe('planStub', () => {
  it('only a bridge, up, no address', () => {
    expect(planStub(def, base).map((p) => p.step.action)).toEqual(['create-bridge', 'disable-ipv6', 'set-link']);
  });
});
