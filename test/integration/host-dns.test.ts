/**
 * The host resolves guest names: vnetd registers an up network's DNS server and "~domain" for its
 * bridge with a real systemd-resolved over D-Bus (SetLinkDNS, SetLinkDomains), and reverts them
 * (RevertLink) when the network no longer wants them. resolved is Debian's, extracted (never
 * installed; see test/support/resolved.ts), in the host namespace with a private bus; what it
 * holds is read back with its own resolvectl, and a name is resolved through it.
 */
import { execa } from 'execa';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DbusDaemon } from '../support/dbus-daemon.js';
import { cleanupAll, createNetns, hostAndWan, veth, waitFor, type Netns } from '../support/netns.js';
import { extractResolved, RESOLVECTL, RESOLVED_BUS_CONFIG, TestResolved } from '../support/resolved.js';
import { Vnetd, vnetEnv } from '../support/vnetd.js';

let host: Netns;
let bus: DbusDaemon;
let resolved: TestResolved | undefined;
let vnetd: Vnetd;
let labFile: string;

const LAB = `bridge = "vnlab0"
address = "10.52.0.1/24"
dhcp-range = ["10.52.0.100", "10.52.0.199"]
domain = "lab.test"
on-demand = false

[[hosts]]
mac = "52:54:00:aa:00:01"
name = "web"
ip = "10.52.0.10"
`;

/** resolvectl in the host namespace, on the private bus */
async function resolvectl(...args: string[]) {
  const r = await execa('ip', ['netns', 'exec', host.name, RESOLVECTL, '--no-pager', ...args], {
    env: { DBUS_SYSTEM_BUS_ADDRESS: bus.address, PATH: process.env.PATH ?? '' },
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
  });
  return { exitCode: r.exitCode ?? -1, out: `${String(r.stdout)}\n${String(r.stderr)}` };
}

/** What resolved holds for a link, as resolvectl shows it: its DNS servers and domains. */
async function linkDns(ifname: string): Promise<{ servers: string; domains: string } | undefined> {
  const dns = await resolvectl('dns', ifname);
  const domain = await resolvectl('domain', ifname);
  if (dns.exitCode !== 0 || domain.exitCode !== 0) return undefined;
  const after = (t: string) => t.split('\n')[0]!.replace(/^Link \d+ \([^)]+\):\s*/, '').trim();
  return { servers: after(dns.out), domains: after(domain.out) };
}

beforeAll(async () => {
  await extractResolved();
  ({ host } = await hostAndWan());
  bus = await DbusDaemon.start(RESOLVED_BUS_CONFIG);
  const env = vnetEnv({ DBUS_SYSTEM_BUS_ADDRESS: bus.address });
  labFile = path.join(env.VNET_CONFIG_DIR, 'networks', 'lab.toml');
  writeFileSync(labFile, LAB);
  writeFileSync(path.join(env.VNET_CONFIG_DIR, 'networks', 'early.toml'), 'bridge = "vnearly0"\naddress = "10.53.0.1/24"\ndomain = "early.test"\n');
  vnetd = await new Vnetd(host, env).start();
}, 120_000);

afterAll(async () => {
  await vnetd?.stop();
  await resolved?.stop();
  await bus?.stop();
  await cleanupAll();
});

describe('systemd-resolved', () => {
  it('without resolved on the bus nothing happens and nothing fails', async () => {
    const up = await vnetd.cli(['up', 'early']);
    expect(up.exitCode, up.stderr).toBe(0);
    expect((await vnetd.cli(['down', 'early'])).exitCode).toBe(0);
  });

  it('vnet up registers the bridge\'s DNS server and ~domain; the host resolves a guest name through resolved', async () => {
    resolved = await TestResolved.start(host, bus.address);
    await waitFor('resolved on the bus', async () => (await resolvectl('status')).exitCode === 0, 20_000);
    const up = await vnetd.cli(['up', 'lab']);
    expect(up.exitCode, up.stderr).toBe(0);
    expect(await linkDns('vnlab0')).toEqual({ servers: '10.52.0.1', domains: '~lab.test' });
    const status = (await resolvectl('status', 'vnlab0')).out;
    // only names under lab.test go there: not the host's default route for DNS
    expect(status).toContain('-DefaultRoute');
    // resolved uses a link's DNS only while it has carrier: a bridge has it once a guest is on it
    const guest = await createNetns('vg');
    await veth(host, 'lab1', guest, 'eth0');
    await host.run('ip', ['link', 'set', 'lab1', 'master', 'vnlab0']);
    await waitFor('resolved to use vnlab0 for DNS', async () => /Current Scopes: DNS/.test((await resolvectl('status', 'vnlab0')).out));
    const q = await resolvectl('query', '--legend=no', 'web.lab.test');
    expect(q.out, resolved!.log.slice(-2000)).toMatch(/^web\.lab\.test: 10\.52\.0\.10\s+-- link: vnlab0/m);
  });

  it('a reload without the domain reverts the link (RevertLink); with it again it is back', async () => {
    writeFileSync(labFile, LAB.replace('domain = "lab.test"\n', ''));
    const r = await vnetd.cli(['reload', 'lab']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await linkDns('vnlab0')).toEqual({ servers: '', domains: '' });
    writeFileSync(labFile, LAB);
    expect((await vnetd.cli(['reload', 'lab'])).exitCode).toBe(0);
    expect(await linkDns('vnlab0')).toEqual({ servers: '10.52.0.1', domains: '~lab.test' });
  });

  it('a restarted resolved (which holds nothing) gets the bridge\'s settings again, unasked', async () => {
    await resolved!.stop();
    resolved = await TestResolved.start(host, bus.address);
    await waitFor('vnetd to register vnlab0 with the new resolved', async () => (await linkDns('vnlab0'))?.servers === '10.52.0.1', 20_000);
    expect(await linkDns('vnlab0')).toEqual({ servers: '10.52.0.1', domains: '~lab.test' });
  });

  it('after vnet down resolved holds nothing for the bridge', async () => {
    const down = await vnetd.cli(['down', 'lab']);
    expect(down.exitCode, down.stderr).toBe(0);
    const left = await linkDns('vnlab0');
    // the link is gone with the bridge, or (had it stayed) holds nothing
    expect(left === undefined || (left.servers === '' && left.domains === '')).toBe(true);
  });
});
