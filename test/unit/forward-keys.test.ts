/**
 * The forward modes and their keys in a definition: every mode parses, the NAT options of libvirt
 * (`nat-interface`, `nat-address`, `nat-ports`) apply to "nat" only, "bridge" takes a bridge
 * vnet does not own and needs no address, `autostart`, and address = "auto".
 */
import { describe, expect, it } from 'vitest';
import { DefinitionError, parseDefinition, summary } from '../../src/spec/parse.js';

const F = '/etc/vnet/networks/net.toml';
const parse = (text: string) => parseDefinition('net', F, text);
const base = 'bridge = "vnbr1"\naddress = "10.10.0.1/24"\n';

function problem(text: string): DefinitionError {
  try {
    parse(text);
  } catch (e) {
    expect(e).toBeInstanceOf(DefinitionError);
    return e as DefinitionError;
  }
  throw new Error('expected a DefinitionError');
}

describe('forward modes', () => {
  it.each(['nat', 'route', 'isolated', 'open'] as const)('"%s" on a bridge vnet makes', (mode) => {
    const s = parse(`${base}forward = "${mode}"\n`);
    expect(s.forward).toEqual({ mode });
    expect(s.bridge.managed).toBe(true);
  });

  it('"bridge" uses a bridge vnet neither makes nor deletes, with or without an address', () => {
    const bare = parse('bridge = "br0"\nforward = "bridge"\n');
    expect(bare).toMatchObject({ forward: { mode: 'bridge' }, bridge: { name: 'br0', managed: false }, addresses: [] });
    expect(summary(bare)).toBe('br0 (bridge)');
    const served = parse('bridge = "br0"\nforward = "bridge"\naddress = "192.0.2.1/24"\ndhcp-range = ["192.0.2.100", "192.0.2.200"]\n');
    expect(served.dhcp.range4).toEqual({ start: '192.0.2.100', end: '192.0.2.200' });
    expect(summary(served)).toBe('br0 192.0.2.1/24 (bridge)');
  });

  it('"bridge" with a dhcp-range needs the address dnsmasq serves from; every other mode needs an address', () => {
    const e = problem('bridge = "br0"\nforward = "bridge"\ndhcp-range = ["192.0.2.100", "192.0.2.200"]\n');
    expect(e.key).toBe('dhcp-range');
    expect(e.message).toContain("needs `address`: dnsmasq hands out leases from the bridge's own IPv4 address");
    for (const mode of ['nat', 'route', 'isolated', 'open']) expect(problem(`bridge = "b0"\nforward = "${mode}"\n`).key).toBe('address');
  });
});

describe('NAT options', () => {
  it('parse into the "nat" forward, in any key order', () => {
    const want = { mode: 'nat', interface: 'eth0', address: { start: '198.51.100.10', end: '198.51.100.20' }, ports: { start: 2000, end: 3000 } };
    const keys = 'nat-interface = "eth0"\nnat-address = "198.51.100.10-198.51.100.20"\nnat-ports = "2000-3000"\n';
    expect(parse(`${base}forward = "nat"\n${keys}`).forward).toEqual(want);
    expect(parse(`${base}${keys}forward = "nat"\n`).forward).toEqual(want);
    expect(parse(`${base}${keys}`).forward).toEqual(want); // nat is the default
  });

  it('one address is a range of one', () => {
    expect(parse(`${base}nat-address = "198.51.100.7"\n`).forward).toEqual({ mode: 'nat', address: { start: '198.51.100.7', end: '198.51.100.7' } });
  });

  it.each(['route', 'isolated', 'open'])('are refused with forward = "%s", whichever comes first', (mode) => {
    for (const text of [`${base}forward = "${mode}"\nnat-ports = "2000-3000"\n`, `${base}nat-ports = "2000-3000"\nforward = "${mode}"\n`]) {
      const e = problem(text);
      expect(e.key).toBe('nat-ports');
      expect(e.message).toContain(`applies only to forward = "nat" (this network has forward = "${mode}")`);
    }
  });

  it('nat-interface narrows forward = "route" to one uplink, whichever comes first; not the bridge itself', () => {
    for (const text of [`${base}forward = "route"\nnat-interface = "up0"\n`, `${base}nat-interface = "up0"\nforward = "route"\n`])
      expect(parse(text).forward).toEqual({ mode: 'route', interface: 'up0' });
    expect(problem(`${base}forward = "isolated"\nnat-interface = "up0"\n`).message).toContain('applies only to forward = "nat" and "route"');
    expect(problem(`${base}forward = "route"\nnat-interface = "vnbr1"\n`).message).toContain("is the network's own bridge");
  });
});

describe('autostart and address = "auto"', () => {
  it('autostart is off unless set', () => {
    expect(parse(base).lifecycle.autostart).toBe(false);
    expect(parse(`${base}autostart = true\n`).lifecycle.autostart).toBe(true);
  });

  it('"auto" leaves the IPv4 address to vnetd and keeps the IPv6 ones', () => {
    const s = parse('bridge = "vnbr1"\naddress = "auto"\naddress6 = "fd00:5::1/64"\n');
    expect(s.auto).toEqual({ prefixLength: 24 });
    expect(s.addresses.map((a) => a.cidr)).toEqual(['fd00:5::/64']);
    expect(summary(s)).toBe('vnbr1 auto (no subnet picked yet) fd00:5::1/64');
  });

  it('"auto" takes no dhcp-range of its own, and no bridge mode', () => {
    const e = problem('bridge = "vnbr1"\naddress = "auto"\ndhcp-range = ["10.0.0.2", "10.0.0.9"]\n');
    expect(e.key).toBe('dhcp-range');
    expect(e.message).toContain('with address = "auto" vnet picks the subnet');
    expect(problem('bridge = "br0"\naddress = "auto"\nforward = "bridge"\n').message).toContain('forward = "bridge" uses a bridge that exists already');
  });
});
