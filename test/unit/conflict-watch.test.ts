/**
 * The route watch's logic with fake links and a fake clock: a route or address that overlaps an up
 * network after it came up is reported once, a change of it again, its removal as cleared; it
 * subscribes only while some network is up; a burst of events is one check. And a restarted
 * vnetd keeps a network whose subnet something took while it was away (reported, not refused).
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { contributors } from '../../src/desired/desired.js';
import type { SubnetConflict } from '../../src/reconcile/conflicts.js';
import { emptyJournal } from '../../src/reconcile/journal.js';
import { Reconciler } from '../../src/reconcile/reconciler.js';
import { ConflictWatch } from '../../src/runtime/conflict-watch.js';
import { builtinDefault } from '../../src/spec/parse.js';
import type { NetworkSpec } from '../../src/spec/spec.js';
import { Mutex } from '../../src/sys/mutex.js';
import { FakeClock, FakeLinks, fakeBackends, settle } from '../support/fakes.js';

const log = pino({ level: 'silent' });

function setup(up: NetworkSpec[]) {
  const links = new FakeLinks();
  const clock = new FakeClock();
  const reports: Array<[string, SubnetConflict | undefined]> = [];
  let listener: (() => void) | undefined;
  let subscriptions = 0;
  const watch = new ConflictWatch({
    host: links,
    subscribe: (fn) => {
      subscriptions += 1;
      listener = fn;
      return () => (listener = undefined);
    },
    networks: () => up,
    report: (n, c) => reports.push([n, c]),
    clock,
    log,
  });
  const event = () => listener?.();
  return { links, clock, reports, watch, event, subscribed: () => listener !== undefined, subscriptions: () => subscriptions };
}

describe('ConflictWatch', () => {
  it('reports a VPN route over an up network, a change of it, and its removal; one check per burst', async () => {
    const def = builtinDefault();
    const { links, clock, reports, watch, event } = setup([def]);
    const br = links.addForeign('virbr0');
    links.routes.push({ family: 4, dst: '192.168.122.0/24', oif: br.index });
    watch.watch(true);
    event(); // its own bridge's route: nothing to report
    await clock.advance(200);
    expect(reports).toEqual([]);
    const vpn = links.addForeign('tun0', 'tun');
    links.routes.push({ family: 4, dst: '192.168.122.0/24', oif: vpn.index });
    for (let i = 0; i < 5; i++) event();
    await clock.advance(200);
    expect(reports).toEqual([['default', { subnet: '192.168.122.0/24', interface: 'tun0', detail: 'route 192.168.122.0/24', key: 'address' }]]);
    event();
    await clock.advance(200);
    expect(reports).toHaveLength(1); // unchanged: nothing new to say
    links.routes = links.routes.filter((r) => r.oif !== vpn.index);
    links.routes.push({ family: 4, dst: '192.168.0.0/16', oif: vpn.index });
    event();
    await clock.advance(200);
    expect(reports[1]).toEqual(['default', expect.objectContaining({ detail: 'route 192.168.0.0/16' })]);
    links.routes = links.routes.filter((r) => r.oif !== vpn.index);
    event();
    await clock.advance(200);
    expect(reports[2]).toEqual(['default', undefined]);
  });

  it('subscribes only while a network is up, and clears what it reported when none is', async () => {
    const { links, clock, reports, watch, event, subscribed, subscriptions } = setup([builtinDefault()]);
    expect(subscribed()).toBe(false);
    watch.watch(true);
    watch.watch(true);
    expect(subscriptions()).toBe(1);
    links.addresses.push({ family: 4, index: links.addForeign('wg0', 'wireguard').index, address: '192.168.122.9', prefix: 32 });
    event();
    await clock.advance(200);
    expect(reports.map(([, c]) => c?.interface)).toEqual(['wg0']);
    watch.watch(false);
    expect(subscribed()).toBe(false);
    expect(reports[1]).toEqual(['default', undefined]);
    event();
    await clock.advance(1000);
    expect(reports).toHaveLength(2);
  });
});

describe('a restarted vnetd and a subnet taken while it was away', () => {
  it('keeps the network that is up (its address is on its bridge) and refuses one that is not', async () => {
    const b = fakeBackends();
    const r = new Reconciler({ backends: b, contributors: contributors({ runtimeDir: '/run/vnet', stateDir: '/var/lib/vnet' }), log, journal: emptyJournal(), save: async () => undefined });
    const mutex = new Mutex();
    const def = builtinDefault();
    await mutex.run((l) => r.converge(l, [{ spec: def, level: 'up' }], { names: new Set(['default']), sweep: false }, 'rollback'));
    const vpn = b.links.addForeign('tun0', 'tun');
    b.links.routes.push({ family: 4, dst: '192.168.122.0/24', oif: vpn.index });
    await settle();
    const { steps } = await mutex.run((l) => r.plan(l, [{ spec: def, level: 'up' }], { names: new Set(['default']), sweep: false }));
    expect(steps).toEqual([]);
    await mutex.run((l) => r.converge(l, [{ spec: def, level: 'down' }], { names: new Set(['default']), sweep: false }, 'best-effort'));
    await expect(mutex.run((l) => r.converge(l, [{ spec: def, level: 'up' }], { names: new Set(['default']), sweep: false }, 'rollback'))).rejects.toThrow(
      /subnet 192\.168\.122\.0\/24 is already in use by interface tun0 \(route 192\.168\.122\.0\/24\)/,
    );
  });
});
