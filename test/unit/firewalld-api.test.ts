import { describe, expect, it } from 'vitest';
import { boundInterfaces, FIREWALLD, firewalldCode, firewalldSignal, isVnetZone, VNET_ZONES, zoneFor } from '../../src/firewall/firewalld-api.js';

const SIGNAL = 4;
const ownerChanged = (name: string, old: string, now: string) => ({ type: SIGNAL, sender: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member: 'NameOwnerChanged', body: [name, old, now] });
const reloaded = (sender: string) => ({ type: SIGNAL, sender, path: FIREWALLD.path, interface: FIREWALLD.iface, member: 'Reloaded', body: [] });

describe("firewalld's side", () => {
  it('one zone per forward mode that forwards differently; none for open and bridge', () => {
    expect(zoneFor('nat')).toBe('vnet');
    expect(zoneFor('route')).toBe('vnet-routed');
    expect(zoneFor('isolated')).toBe('vnet-isolated');
    expect(zoneFor('open')).toBeUndefined();
    expect(zoneFor('bridge')).toBeUndefined();
    expect(VNET_ZONES).toEqual(['vnet', 'vnet-routed', 'vnet-isolated']);
    expect(isVnetZone('public')).toBe(false);
  });

  it('reads the interfaces of vnet\'s zones only from getActiveZones', () => {
    const active = { public: { interfaces: ['up0'] }, vnet: { interfaces: ['virbr0'], sources: [] }, 'vnet-isolated': { interfaces: ['vnlab0'] }, libvirt: { interfaces: ['virbr9'] } };
    expect([...boundInterfaces(active)].sort()).toEqual(['virbr0', 'vnlab0']);
    expect(boundInterfaces({}).size).toBe(0);
    expect(boundInterfaces(null).size).toBe(0);
    expect(boundInterfaces({ vnet: { interfaces: 'virbr0' } }).size).toBe(0);
  });

  it('tells its refusals apart by their code', () => {
    expect(firewalldCode("ZONE_CONFLICT: 'virbr0' already bound to 'public'")).toBe('ZONE_CONFLICT');
    expect(firewalldCode('INVALID_ZONE: vnet')).toBe('INVALID_ZONE');
    expect(firewalldCode('something else')).toBeUndefined();
  });

  it("believes a reload only from firewalld's current owner, and name owners only from the bus", () => {
    expect(firewalldSignal(reloaded(':1.7'), ':1.7')).toBe('reloaded');
    // any peer may send a unicast signal to vnetd
    expect(firewalldSignal(reloaded(':1.66'), ':1.7')).toBeUndefined();
    expect(firewalldSignal(reloaded(':1.7'), '')).toBeUndefined();
    expect(firewalldSignal(reloaded(FIREWALLD.name), ':1.7')).toBeUndefined();
    expect(firewalldSignal(ownerChanged(FIREWALLD.name, '', ':1.9'), ':1.7')).toEqual({ owner: ':1.9' });
    expect(firewalldSignal(ownerChanged(FIREWALLD.name, ':1.9', ''), ':1.9')).toEqual({ owner: '' });
    expect(firewalldSignal(ownerChanged('org.example.Other', '', ':1.9'), '')).toBeUndefined();
    expect(firewalldSignal({ ...ownerChanged(FIREWALLD.name, '', ':1.66'), sender: ':1.66' }, '')).toBeUndefined();
    expect(firewalldSignal({ ...reloaded(':1.7'), type: 1 }, ':1.7')).toBeUndefined();
  });
});
