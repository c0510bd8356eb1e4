/**
 * The host-dns step with the fake backends and a fake resolver: what the reconciler registers for
 * which network, when it reverts, and that nothing is planned without a resolver. The real
 * systemd-resolved: test/integration/host-dns.test.ts.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { contributors } from '../../src/desired/desired.js';
import { domainsBody, parseDomains, parseServers, serversBody, type LinkDns } from '../../src/hostdns/resolved-api.js';
import type { HostDns } from '../../src/reconcile/backends.js';
import { emptyJournal } from '../../src/reconcile/journal.js';
import { Reconciler } from '../../src/reconcile/reconciler.js';
import { parseDefinition } from '../../src/spec/parse.js';
import { Mutex } from '../../src/sys/mutex.js';
import { fakeBackends } from '../support/fakes.js';

class FakeResolver implements HostDns {
  readonly name = 'fake-resolved';
  running = true;
  readonly links = new Map<number, LinkDns>();
  readonly calls: string[] = [];
  async available() {
    return this.running;
  }
  async state(index: number) {
    return this.running ? (this.links.get(index) ?? { servers: [], domains: [] }) : undefined;
  }
  async register(index: number, dns: LinkDns) {
    this.calls.push(`register ${index}`);
    this.links.set(index, dns);
  }
  async revert(index: number) {
    this.calls.push(`revert ${index}`);
    this.links.delete(index);
  }
}

const LAB = 'bridge = "vnlab0"\naddress = "10.20.0.1/24"\ndhcp-range = ["10.20.0.10", "10.20.0.99"]\ndomain = "lab.test"\n';
const spec = (extra = '', base = LAB) => parseDefinition('lab', 'lab.toml', base + extra);
const one = { names: new Set(['lab']), sweep: false };

function setup(running = true) {
  const b = fakeBackends();
  const resolver = new FakeResolver();
  resolver.running = running;
  const r = new Reconciler({ backends: { ...b, hostDns: resolver }, contributors: contributors({ runtimeDir: '/run/vnet', stateDir: '/var/lib/vnet' }), log: pino({ level: 'silent' }), journal: emptyJournal(), save: async () => undefined });
  const mutex = new Mutex();
  const converge = (s: ReturnType<typeof spec>, level: 'up' | 'down') => mutex.run((l) => r.converge(l, [{ spec: s, level }], one, level === 'up' ? 'rollback' : 'best-effort'));
  const plan = (s: ReturnType<typeof spec>) => mutex.run((l) => r.plan(l, [{ spec: s, level: 'up' }], one));
  const index = () => b.links.links.find((l) => l.name === 'vnlab0')!.index;
  return { b, resolver, converge, plan, index };
}

describe('host DNS through the reconciler', () => {
  it('up registers the bridge: its DNS server for ~domain only; the next plan is empty; down reverts it before the bridge goes', async () => {
    const { resolver, converge, plan, index } = setup();
    await converge(spec(), 'up');
    expect(resolver.links.get(index())).toEqual({ servers: ['10.20.0.1'], domains: ['~lab.test'] });
    expect((await plan(spec())).steps).toEqual([]);
    const i = index();
    await converge(spec(), 'down');
    expect(resolver.calls).toEqual([`register ${i}`, `revert ${i}`]);
  });

  it('a domain dropped or dns = false reverts the link; a new domain registers it again', async () => {
    const { resolver, converge, index } = setup();
    await converge(spec(), 'up');
    await converge(spec('', LAB.replace('domain = "lab.test"\n', '')), 'up');
    expect(resolver.links.has(index())).toBe(false);
    await converge(spec('', LAB.replace('lab.test', 'lab2.test')), 'up');
    expect(resolver.links.get(index())?.domains).toEqual(['~lab2.test']);
    await converge(spec('dns = false\n', LAB.replace('lab.test', 'lab2.test')), 'up');
    expect(resolver.links.has(index())).toBe(false);
  });

  it('someone else changing the link (another DNS server) is put right at the next converge', async () => {
    const { resolver, converge, index } = setup();
    await converge(spec(), 'up');
    resolver.links.set(index(), { servers: ['192.0.2.1'], domains: [] });
    await converge(spec(), 'up');
    expect(resolver.links.get(index())).toEqual({ servers: ['10.20.0.1'], domains: ['~lab.test'] });
  });

  it('without a running resolver nothing is planned and nothing is called', async () => {
    const { resolver, converge, plan } = setup(false);
    await converge(spec(), 'up');
    expect((await plan(spec())).steps).toEqual([]);
    await converge(spec(), 'down');
    expect(resolver.calls).toEqual([]);
  });

  it('an existing bridge (forward = "bridge") is its owner\'s: nothing registered there', async () => {
    const { b, resolver, converge } = setup();
    b.links.links.push({ ...b.links.links[0]!, index: 77, name: 'br0', kind: 'bridge', up: true, master: undefined } as never);
    await converge(parseDefinition('lab', 'lab.toml', 'bridge = "br0"\nforward = "bridge"\naddress = "10.20.0.1/24"\ndhcp-range = ["10.20.0.10", "10.20.0.99"]\ndomain = "lab.test"\n'), 'up');
    expect(resolver.calls).toEqual([]);
  });
});

describe('resolved messages', () => {
  it('writes SetLinkDNS and SetLinkDomains bodies and reads the Link properties back', () => {
    expect(serversBody(['10.20.0.1', 'fd00::1'])).toEqual([
      [2, Buffer.from([10, 20, 0, 1])],
      [10, Buffer.from([0xfd, 0, ...new Array(13).fill(0), 1])],
    ]);
    expect(domainsBody(['~lab.test', 'search.test'])).toEqual([
      ['lab.test', true],
      ['search.test', false],
    ]);
    expect(parseServers([[2, Buffer.from([10, 20, 0, 1])], [2, Buffer.from([1])], 'junk'])).toEqual(['10.20.0.1']);
    expect(parseDomains([['lab.test', true], ['x', false], [5, true]])).toEqual(['~lab.test', 'x']);
  });
});
