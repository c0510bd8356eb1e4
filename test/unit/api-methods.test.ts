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
    expect(Object.entries(METHODS).filter(([, m]) => m.access === 'admin').map(([n]) => n).sort()).toEqual(['down', 'reload', 'up']);
  });
});

describe('D-Bus', () => {
  it('each Manager method is a binding of a method of the table', () => {
    for (const b of BINDINGS) expect(Object.hasOwn(METHODS, b.method), b.name).toBe(true);
    expect(BINDINGS.map((b) => b.name)).toEqual(['ListNetworks', 'GetNetworkByName', 'Up', 'Down', 'Reload', 'GetLeases', 'GetLeasesPage', 'Status', 'CreateNetwork', 'DeleteNetwork']);
  });
});
