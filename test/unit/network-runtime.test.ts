/**
 * The network runtime's timing and state logic with fake backends and a fake clock: on-demand
 * bring-up, idle-down after the last tap, the stub standby, pins, and what a failure leaves.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { contributors } from '../../src/desired/desired.js';
import { emptyJournal } from '../../src/reconcile/journal.js';
import { Reconciler } from '../../src/reconcile/reconciler.js';
import { NetworkRuntime } from '../../src/runtime/network-runtime.js';
import { parseDefinition } from '../../src/spec/parse.js';
import { Mutex } from '../../src/sys/mutex.js';
import { FakeClock, fakeBackends, settle } from '../support/fakes.js';

const log = pino({ level: 'silent' });
const spec = (extra = '') => parseDefinition('office', 'office.toml', `bridge = "vnoff0"\naddress = "10.30.0.1/24"\nidle-down = 60\n${extra}`);

function setup() {
  const b = fakeBackends();
  const clock = new FakeClock();
  const mutex = new Mutex();
  const taps = new Map<string, number>();
  const r = new Reconciler({ backends: b, contributors: contributors({ runtimeDir: '/run/vnet', stateDir: '/var/lib/vnet' }), log, journal: emptyJournal(), save: async () => undefined });
  const rt = new NetworkRuntime({ reconciler: r, mutex, clock, log, tapsOn: (n) => taps.get(n) ?? 0, persist: async () => undefined });
  const states: string[] = [];
  rt.on('state', (name, state) => states.push(`${name}:${state}`));
  const bridge = () => b.links.links.find((l) => l.name === 'vnoff0');
  return { b, clock, mutex, taps, rt, states, bridge };
}

describe('on demand and idle-down', () => {
  it('goes down idle-down seconds after the last tap, not before', async () => {
    const { clock, mutex, taps, rt, bridge } = setup();
    await mutex.run((l) => rt.up(l, spec()));
    taps.set('office', 1);
    rt.tapArrived('office');
    taps.set('office', 0);
    rt.scheduleIdle(rt.get('office') as never);
    await clock.advance(59_000);
    expect(rt.get('office')?.state).toBe('up');
    await clock.advance(1_000);
    expect(rt.get('office')).toBeUndefined();
    expect(bridge()).toBeUndefined();
  });

  it('a tap within idle-down keeps it up, with the same bridge', async () => {
    const { clock, mutex, taps, rt, bridge } = setup();
    await mutex.run((l) => rt.up(l, spec()));
    const index = bridge()!.index;
    rt.scheduleIdle(rt.get('office') as never);
    await clock.advance(30_000);
    taps.set('office', 1);
    rt.tapArrived('office');
    await clock.advance(120_000);
    expect(rt.get('office')?.state).toBe('up');
    expect(bridge()?.index).toBe(index);
  });

  it('a pinned network (vnet up) never idles down', async () => {
    const { clock, mutex, rt } = setup();
    await mutex.run((l) => rt.up(l, spec(), { pin: true }));
    rt.scheduleIdle(rt.get('office') as never);
    await clock.advance(3600_000);
    expect(rt.get('office')).toMatchObject({ state: 'up', pinned: true });
    expect(clock.pending()).toBe(0);
  });

  it('standby = "stub" goes back to its UP bridge alone, not to nothing', async () => {
    const { b, clock, mutex, rt, bridge, states } = setup();
    const s = spec('standby = "stub"\n');
    await mutex.run((l) => rt.restore(l, [s]));
    expect(rt.get('office')?.state).toBe('stub');
    await mutex.run((l) => rt.up(l, s));
    rt.scheduleIdle(rt.get('office') as never);
    await clock.advance(60_000);
    expect(rt.get('office')?.state).toBe('stub');
    expect(bridge()?.up).toBe(true);
    expect(b.links.addresses.filter((a) => a.index === bridge()!.index)).toEqual([]);
    expect(b.dhcp.servers.size).toBe(0);
    expect(states).toEqual(['office:stub', 'office:starting', 'office:up', 'office:stopping', 'office:stub']);
  });

  it('a network that is not on demand does not get an idle timer', async () => {
    const { clock, mutex, rt } = setup();
    await mutex.run((l) => rt.up(l, spec('on-demand = false\n')));
    rt.scheduleIdle(rt.get('office') as never);
    expect(clock.pending()).toBe(0);
  });
});

describe('failures', () => {
  it('a failed bring-up with no taps and no pin leaves no record and nothing made', async () => {
    const { b, mutex, rt, bridge } = setup();
    b.dhcp.fail('start');
    await expect(mutex.run((l) => rt.up(l, spec()))).rejects.toMatchObject({ code: 'EIO', message: expect.stringMatching(/network "office" could not come up/) });
    expect(rt.get('office')).toBeUndefined();
    expect(bridge()).toBeUndefined();
  });

  it('a failed bring-up of a stub returns to the stub', async () => {
    const { b, mutex, rt, bridge } = setup();
    const s = spec('standby = "stub"\n');
    await mutex.run((l) => rt.restore(l, [s]));
    b.firewall.fail('apply');
    await expect(mutex.run((l) => rt.up(l, s))).rejects.toThrow(/could not come up/);
    expect(rt.get('office')?.state).toBe('stub');
    expect(bridge()?.up).toBe(true);
  });

  it('a DHCP server that gives up marks the network failed; `up` brings it back', async () => {
    const { mutex, rt } = setup();
    await mutex.run((l) => rt.up(l, spec()));
    rt.dhcpFailed('office', 'exited with code 5');
    expect(rt.get('office')).toMatchObject({ state: 'failed', reason: 'dnsmasq keeps failing: exited with code 5' });
    expect(rt.healthy().has('office')).toBe(false);
    await mutex.run((l) => rt.up(l, spec()));
    expect(rt.get('office')?.state).toBe('up');
  });

  it('a lost bridge marks the network failed and removes its rules and server', async () => {
    const { b, mutex, rt, bridge } = setup();
    await mutex.run((l) => rt.up(l, spec()));
    await b.links.deleteLink(bridge()!.index);
    await mutex.run((l) => rt.bridgeLost(l, 'office', 'vnoff0'));
    await settle();
    expect(rt.get('office')).toMatchObject({ state: 'failed', reason: 'bridge vnoff0 was deleted by someone else' });
    expect(b.dhcp.servers.size).toBe(0);
    expect(b.firewall.table.exists).toBe(false);
  });
});

describe('autostart', () => {
  const auto = (name: string, bridge: string, net: number) =>
    parseDefinition(name, `${name}.toml`, `bridge = "${bridge}"\naddress = "10.${net}.0.1/24"\nautostart = true\nidle-down = 5\n`);

  it('comes up pinned at start-up and never idles down; the name is kept as started this boot', async () => {
    const { b, clock, mutex, rt, states } = setup();
    await mutex.run((l) => rt.restore(l, [], { autostart: [auto('sys', 'vnsys0', 70)] }));
    expect(rt.get('sys')).toMatchObject({ state: 'up', pinned: true, level: 'up' });
    expect(b.links.links.find((l) => l.name === 'vnsys0')?.up).toBe(true);
    expect(b.dhcp.servers.has('sys')).toBe(true);
    expect(rt.active()).toBe(true); // what keeps VNET_IDLE_EXIT from stopping vnetd
    rt.scheduleIdle(rt.get('sys') as never);
    await clock.advance(3600_000);
    expect(rt.get('sys')?.state).toBe('up');
    expect(rt.autostartedNames()).toEqual(['sys']);
    expect(states).toEqual(['sys:up']);
  });

  it('once per boot: after `vnet down`, a restarted vnetd of the same boot leaves it down', async () => {
    const first = setup();
    await first.mutex.run((l) => first.rt.restore(l, [], { autostart: [auto('sys', 'vnsys0', 70)] }));
    await first.mutex.run((l) => first.rt.down(l, 'sys'));
    const done = first.rt.autostartedNames();
    const again = setup();
    await again.mutex.run((l) => again.rt.restore(l, [], { autostart: [auto('sys', 'vnsys0', 70), auto('new', 'vnnew0', 71)], done }));
    expect(again.rt.get('sys')).toBeUndefined();
    expect(again.rt.get('new')?.state).toBe('up'); // autostart added to a definition since: comes up
    expect(again.rt.autostartedNames()).toEqual(['new', 'sys']);
  });

  it('an autostart network that cannot come up is failed, with the reason, and the others still come up', async () => {
    const { b, mutex, rt } = setup();
    b.links.addForeign('vnsys0');
    await mutex.run((l) => rt.restore(l, [], { autostart: [auto('sys', 'vnsys0', 70), auto('two', 'vntwo0', 72)] }));
    expect(rt.get('sys')).toMatchObject({ state: 'failed', reason: expect.stringMatching(/vnsys0 already exists and was not created by vnet/) });
    expect(rt.get('two')?.state).toBe('up');
  });

  it('a stub that is also autostart comes up, not just to its stub', async () => {
    const { mutex, rt } = setup();
    const s = parseDefinition('sys', 'sys.toml', 'bridge = "vnsys0"\naddress = "10.70.0.1/24"\nautostart = true\nstandby = "stub"\n');
    await mutex.run((l) => rt.restore(l, [s], { autostart: [s] }));
    expect(rt.get('sys')).toMatchObject({ state: 'up', pinned: true });
  });
});
