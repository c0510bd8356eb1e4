import { describe, expect, it } from 'vitest';
import { boundBridges, dockerUserRules, insertPosition, parseFilterListing, parseTag, rulesOf, splitRule } from '../../src/firewall/docker-user-rules.js';

/** `iptables -S` of a filter table as Docker 28 leaves it, with an admin's rule and vnet's for virbr0 (nat) */
const LISTING = [
  '-P INPUT ACCEPT',
  '-P FORWARD DROP',
  '-P OUTPUT ACCEPT',
  '-N DOCKER',
  '-N DOCKER-FORWARD',
  '-N DOCKER-USER',
  '-A FORWARD -j DOCKER-USER',
  '-A FORWARD -j DOCKER-FORWARD',
  '-A DOCKER-USER -s 203.0.113.7/32 -m comment --comment "the admin\'s \\"own\\" rule" -j DROP',
  '-A DOCKER-USER -i virbr0 -o docker0 -m comment --comment "vnet:virbr0:nat" -j RETURN',
  '-A DOCKER-USER -i virbr0 -o br-+ -m comment --comment "vnet:virbr0:nat" -j RETURN',
  '-A DOCKER-USER -i virbr0 -m comment --comment "vnet:virbr0:nat" -j ACCEPT',
  '-A DOCKER-USER -o virbr0 -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -m comment --comment "vnet:virbr0:nat" -j ACCEPT',
  '-A DOCKER-FORWARD -i docker0 -j ACCEPT',
  '',
].join('\n');

describe("vnet's rules in DOCKER-USER", () => {
  it('per mode: NAT lets guests out and replies in (Docker keeps judging its own networks), isolated only guest to guest; open and bridge ask nothing', () => {
    const c = ['-m', 'comment', '--comment'];
    expect(dockerUserRules('virbr0', 'nat')).toEqual([
      ['-i', 'virbr0', '-o', 'docker0', ...c, 'vnet:virbr0:nat', '-j', 'RETURN'],
      ['-i', 'virbr0', '-o', 'br-+', ...c, 'vnet:virbr0:nat', '-j', 'RETURN'],
      ['-i', 'virbr0', ...c, 'vnet:virbr0:nat', '-j', 'ACCEPT'],
      ['-o', 'virbr0', '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED,DNAT', ...c, 'vnet:virbr0:nat', '-j', 'ACCEPT'],
    ]);
    expect(dockerUserRules('vnrt0', 'route').at(-1)).toEqual(['-o', 'vnrt0', ...c, 'vnet:vnrt0:route', '-j', 'ACCEPT']);
    expect(dockerUserRules('vnlab0', 'isolated')).toEqual([['-i', 'vnlab0', '-o', 'vnlab0', ...c, 'vnet:vnlab0:isolated', '-j', 'ACCEPT']]);
    expect(dockerUserRules('virbr0', 'open')).toEqual([]);
    expect(dockerUserRules('br0', 'bridge')).toEqual([]);
    expect(() => dockerUserRules('-j DROP', 'nat')).toThrow(/bridge name "-j DROP"/);
  });

  it('reads the listing the way iptables quotes it', () => {
    expect(splitRule('-A DOCKER-USER -s 203.0.113.7/32 -m comment --comment "a \\"b\\" c" -j DROP')).toEqual(['-A', 'DOCKER-USER', '-s', '203.0.113.7/32', '-m', 'comment', '--comment', 'a "b" c', '-j', 'DROP']);
    const chain = parseFilterListing(LISTING);
    expect(chain.exists).toBe(true);
    expect(chain.rules).toHaveLength(5);
    expect(chain.rules[1]).toEqual(dockerUserRules('virbr0', 'nat')[0]);
    expect(parseFilterListing('-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n')).toEqual({ exists: false, rules: [] });
  });

  it('a bridge is bound only while all its rules are there, for one mode; the admin\'s rules are never vnet\'s', () => {
    const chain = parseFilterListing(LISTING);
    expect([...boundBridges(chain)]).toEqual(['virbr0']);
    expect(rulesOf(chain, 'virbr0')).toEqual(dockerUserRules('virbr0', 'nat'));
    // one rule deleted by someone: not bound, so vnet puts them back
    const partial = { ...chain, rules: chain.rules.filter((_, i) => i !== 3) };
    expect(boundBridges(partial).size).toBe(0);
    // rules of two modes for one bridge: not bound
    const mixed = { ...chain, rules: [...chain.rules, ...dockerUserRules('virbr0', 'isolated')] };
    expect(boundBridges(mixed).size).toBe(0);
    expect(parseTag('vnet:virbr0:nat')).toEqual({ bridge: 'virbr0', mode: 'nat' });
    for (const other of ["the admin's rule", 'vnet:virbr0', 'vnet:virbr0:open', 'vnet:a b:nat', 'vnet:-x:nat', 'vnet:virbr0:nat:x']) expect(parseTag(other), other).toBeUndefined();
  });

  it("goes after the admin's rules, but before a closing unconditional RETURN (Docker before 28)", () => {
    const chain = parseFilterListing(LISTING);
    expect(insertPosition(chain)).toBe(6);
    expect(insertPosition({ exists: true, rules: [] })).toBe(1);
    expect(insertPosition({ exists: true, rules: [['-s', '10.0.0.1/32', '-j', 'DROP'], ['-j', 'RETURN']] })).toBe(2);
    expect(insertPosition({ exists: true, rules: [['-i', 'x', '-j', 'RETURN']] })).toBe(2);
  });
});
