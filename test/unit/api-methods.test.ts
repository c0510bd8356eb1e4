/** The API table: parameters checked whatever front they come by, and every D-Bus method bound to one of its methods. */
import { describe, expect, it } from 'vitest';
import { VnetError } from '../../src/api/errors.js';
import { METHODS, methodOf } from '../../src/api/methods.js';
import { BINDINGS } from '../../src/dbus/methods.js';

describe('parameters', () => {
  it.each([
    ['status', {}, /parameter `name` must be a string, got nothing/],
    ['status', { name: 7 }, /parameter `name` must be a string, got number/],
    ['down', { name: 'x', force: 'yes' }, /parameter `force` must be true or false, got a string of 3 characters/],
    ['tap', { bridge: 'virbr0', vnetHdr: 1 }, /parameter `vnetHdr` must be true or false/],
    ['reload', { name: ['a'] }, /parameter `name` must be a string, got object/],
    ['addPortForward', { name: 'web', proto: 'sctp', hostPort: 80, guest: '10.0.0.5' }, /parameter `proto` must be "tcp" or "udp", got a string of 4 characters/],
    ['addPortForward', { name: 'web', proto: 'tcp', hostPort: 0, guest: '10.0.0.5' }, /parameter `hostPort` must be a port 1..65535, got number/],
    ['addPortForward', { name: 'web', proto: 'tcp', hostPort: '80', guest: '10.0.0.5' }, /parameter `hostPort` must be a port 1..65535, got a string/],
    ['addPortForward', { name: 'web', proto: 'tcp', hostPort: 80, guest: '10.0.0.5', guestPort: 65536 }, /parameter `guestPort` must be a port 1..65535/],
    ['addPortForward', { name: 'web', proto: 'tcp', hostPort: 80 }, /parameter `guest` must be a string, got nothing/],
    ['removePortForward', { name: 'web', proto: 'udp', hostPort: 1.5 }, /parameter `hostPort` must be a port 1..65535/],
    ['create', { name: 'x', allowUsers: 'bob' }, /parameter `allowUsers` must be an array of at most 32 user names, got a string/],
    ['create', { name: 'x', allowUsers: Array.from({ length: 33 }, () => 'bob') }, /parameter `allowUsers` must be an array of at most 32 user names/],
    ['create', { name: 'x', dhcp: 'yes' }, /parameter `dhcp` must be true or false/],
    ['delete', { name: 3 }, /parameter `name` must be a string, got number/],
  ])('%s %j: EINVAL naming the parameter', (m, raw, message) => {
    let err: unknown;
    try {
      methodOf(m)!.params(raw);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VnetError);
    expect((err as VnetError).code).toBe('EINVAL');
    expect((err as Error).message).toMatch(message);
  });

  it('an unknown method or one named after Object.prototype is no method', () => {
    for (const name of ['nosuch', '__proto__', 'constructor', 'toString', 'hasOwnProperty']) expect(methodOf(name)).toBeUndefined();
  });

  it('every method says who may call it and what it does', () => {
    for (const [name, m] of Object.entries(METHODS)) {
      expect(['anyone', 'admin'], name).toContain(m.access);
      expect(m.summary.length, name).toBeGreaterThan(10);
    }
    expect(Object.entries(METHODS).filter(([, m]) => m.access === 'admin').map(([n]) => n).sort()).toEqual(['addPortForward', 'down', 'reload', 'removePortForward', 'up']);
  });
});

describe('D-Bus', () => {
  it('each Manager method is a binding of a method of the table', () => {
    for (const b of BINDINGS) expect(Object.hasOwn(METHODS, b.method), b.name).toBe(true);
    expect(BINDINGS.map((b) => b.name)).toEqual([
      'ListNetworks', 'GetNetworkByName', 'Up', 'Down', 'Reload', 'GetLeases', 'GetLeasesPage', 'Status', 'AddPortForward', 'RemovePortForward', 'ListPortForwards', 'CreateNetwork', 'DeleteNetwork',
    ]);
  });

  it('AddPortForward and RemovePortForward check their arguments through the table (the bus guarantees types only)', () => {
    const add = BINDINGS.find((b) => b.name === 'AddPortForward')!;
    expect(add.params(['web', 'tcp', 8080, 'db', 0])).toEqual({ name: 'web', proto: 'tcp', hostPort: 8080, guest: 'db', guestPort: undefined });
    expect(add.params(['web', 'udp', 53, '10.0.0.5', 5353])).toMatchObject({ proto: 'udp', guestPort: 5353 });
    expect(() => add.params(['web', 'TCP', 8080, 'db', 0])).toThrow(/parameter `proto` must be "tcp" or "udp"/);
    expect(() => add.params(['web', 'tcp', 0, 'db', 0])).toThrow(/parameter `hostPort` must be a port 1..65535/);
    expect(() => BINDINGS.find((b) => b.name === 'RemovePortForward')!.params(['web', 'tcp', 70000])).toThrow(/`hostPort`/);
    const list = BINDINGS.find((b) => b.name === 'ListPortForwards')!;
    expect(list.params([''])).toEqual({ name: undefined });
    const row = { network: 'web', proto: 'tcp' as const, hostPort: 8080, guest: 'db', address: '10.0.0.5', guestPort: 80, origin: 'runtime' as const, active: true };
    expect(list.reply([row] as never, {} as never)).toEqual([[['web', 'tcp', 8080, 'db', '10.0.0.5', 80, 'runtime', true]]]);
  });
});
