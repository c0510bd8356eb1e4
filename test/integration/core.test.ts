/**
 * End to end: vnetd + vnet CLI bring the default NAT network up and down in a
 * "host" namespace whose uplink reaches a "wan" namespace (198.51.100.1); a "guest"
 * namespace on a veth in the bridge gets a DHCP lease and pings the wan through NAT.
 */
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupAll, createNetns, hostAndWan, veth, type Netns } from '../support/netns.js';
import { ROOT, Vnetd, vnetEnv } from '../support/vnetd.js';

const UDHCPC = path.join(ROOT, 'test/support/udhcpc.sh');
const DNS_PROBE = path.join(ROOT, 'test/support/dns-probe.py');

let host: Netns;
let wan: Netns;
let guest: Netns;
let vnetd: Vnetd;
let foreignBefore: string;

async function linkNames(ns: Netns): Promise<string[]> {
  return (await ns.links()).map((l) => l.ifname).sort();
}

/** `default` up and the guest on virbr0 (as the tests before leave them; made so when run alone) */
async function guestOnDefault(): Promise<void> {
  await vnetd.call('up', { name: 'default' });
  if (!(await linkNames(host)).includes('vgport')) await veth(host, 'vgport', guest, 'eth0');
  await host.run('ip', ['link', 'set', 'vgport', 'master', 'virbr0']);
}

async function vnetTable(ns: Netns) {
  return ns.tryRun('nft', ['-j', 'list', 'table', 'inet', 'vnet']);
}

beforeAll(async () => {
  ({ host, wan } = await hostAndWan());
  guest = await createNetns('vg');
  // A table someone else owns: vnet must leave it byte for byte.
  await host.run('nft', ['-f', '-'], {
    input: 'table inet foreign {\n chain keepme {\n  type filter hook forward priority 10; policy accept;\n  ip saddr 203.0.113.7 drop\n }\n}\n',
  });
  foreignBefore = await host.run('nft', ['list', 'table', 'inet', 'foreign']);
  vnetd = await new Vnetd(host, vnetEnv()).start();
});

afterAll(async () => {
  await vnetd?.stop();
  await cleanupAll();
});

describe('vnet up default / down default', () => {
  it('status lists the built-in default as down before anything runs', async () => {
    const r = await vnetd.cli(['status', '--json']);
    expect(r.exitCode).toBe(0);
    const list = JSON.parse(r.stdout);
    expect(list).toEqual([expect.objectContaining({ name: 'default', bridge: 'virbr0', state: 'down', subnet: '192.168.122.0/24', source: 'built-in' })]);
    expect(await linkNames(host)).not.toContain('virbr0');
  });

  it('keeps QEMU\'s bridge.conf in step: one include of vnet.conf, which allows virbr0', async () => {
    const dir = vnetd.env.VNET_QEMU_CONF_DIR;
    const conf = readFileSync(path.join(dir, 'bridge.conf'), 'utf8');
    expect(conf.split('\n').filter((l) => l.startsWith('include '))).toEqual([`include ${path.join(dir, 'vnet.conf')}`]);
    expect(readFileSync(path.join(dir, 'vnet.conf'), 'utf8')).toMatch(/^allow virbr0$/m);
    expect(statSync(path.join(dir, 'bridge.conf')).mode & 0o777).toBe(0o644);
  });

  it('brings up virbr0 with its address, NAT table and dnsmasq', async () => {
    const r = await vnetd.cli(['up', 'default']);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('default: up (bridge virbr0, 192.168.122.1/24)');

    const links = await host.links();
    const br = links.find((l) => l.ifname === 'virbr0');
    expect(br?.linkinfo?.info_kind).toBe('bridge');
    expect(br?.flags).toContain('UP');
    const addrs = JSON.parse(await host.run('ip', ['-j', '-4', 'addr', 'show', 'dev', 'virbr0']));
    expect(addrs[0].addr_info.map((a: { local: string; prefixlen: number }) => `${a.local}/${a.prefixlen}`)).toEqual(['192.168.122.1/24']);
    expect((await vnetTable(host)).exitCode).toBe(0);
    expect((await host.run('cat', ['/proc/sys/net/ipv4/ip_forward'])).trim()).toBe('1');
    expect(vnetd.children('dnsmasq')).toHaveLength(1);
  });

  it('a guest on the bridge gets a DHCP lease and reaches the wan through NAT', async () => {
    await veth(host, 'vgport', guest, 'eth0');
    await host.run('ip', ['link', 'set', 'vgport', 'master', 'virbr0']);
    const dhcp = await guest.run('busybox', ['udhcpc', '-i', 'eth0', '-n', '-q', '-t', '10', '-T', '1', '-s', UDHCPC]);
    const ip = /LEASE (\S+)/.exec(dhcp)?.[1];
    expect(ip).toMatch(/^192\.168\.122\.(\d+)$/);
    const last = Number(ip!.split('.')[3]);
    expect(last).toBeGreaterThanOrEqual(2);
    expect(last).toBeLessThanOrEqual(254);
    // wan has no route back to 192.168.122.0/24: a reply arrives only through masquerade.
    const ping = await guest.tryRun('busybox', ['ping', '-c', '2', '-W', '2', '198.51.100.1']);
    expect(ping.stdout).toMatch(/2 packets received/);

    const leases = await vnetd.cli(['leases', 'default', '--json']);
    expect(leases.exitCode).toBe(0);
    expect(JSON.parse(leases.stdout)).toEqual([expect.objectContaining({ ip })]);
    const human = await vnetd.cli(['leases', 'default']);
    expect(human.stdout).toMatch(new RegExp(`MAC\\s+IP\\s+HOSTNAME\\s+EXPIRES\\n\\S+\\s+${ip!.replace(/\./g, '\\.')}`));

    const status = await vnetd.cli(['status']);
    expect(status.stdout).toMatch(/^NAME\s+BRIDGE\s+STATE\s+SUBNET\s+LEASES\s+TAPS$/m);
    expect(status.stdout).toMatch(/^default\s+virbr0\s+up\s+192\.168\.122\.0\/24\s+1\s+-$/m);
  });

  it('dnsmasq answers DNS from the bridge only: the wan side is refused, over UDP and TCP', async () => {
    await guestOnDefault();
    // the guest registers a hostname with its lease; dnsmasq answers for it from its leases
    const dhcp = await guest.run('busybox', ['udhcpc', '-i', 'eth0', '-n', '-q', '-t', '10', '-T', '1', '-x', 'hostname:vnetguest', '-s', UDHCPC]);
    const ip = /LEASE (\S+)/.exec(dhcp)![1]!;
    const fromGuest = await guest.tryRun('busybox', ['timeout', '5', 'nslookup', '-type=a', 'vnetguest', '192.168.122.1']);
    expect(fromGuest.stdout).toContain(ip);
    // the same probe from the bridge is answered and connects: it can tell them apart
    expect(JSON.parse(await guest.run('/usr/bin/python3', [DNS_PROBE, '192.168.122.1', 'vnetguest']))).toEqual({ udp: 'answered', tcp: 'connected' });
    await wan.run('ip', ['route', 'replace', '192.168.122.0/24', 'via', '198.51.100.2']);
    try {
      expect((await wan.tryRun('busybox', ['ping', '-c', '1', '-W', '2', '192.168.122.1'])).exitCode).toBe(0);
      // vnet's input rules reject (not drop) DNS to the bridge address from elsewhere: an
      // ICMP port unreachable at once, which a connected UDP socket and a TCP connect both
      // read as ECONNREFUSED; a drop would be a 3 s timeout, an answer a hole
      expect(JSON.parse(await wan.run('/usr/bin/python3', [DNS_PROBE, '192.168.122.1', 'vnetguest']))).toEqual({ udp: 'refused', tcp: 'refused' });
    } finally {
      await wan.run('ip', ['route', 'del', '192.168.122.0/24']);
    }
  });

  it('anyone may read status; only root (or group vnet) may change networks', async () => {
    const s = await vnetd.cli(['status', '--json'], { user: 'nobody' });
    expect(s.exitCode).toBe(0);
    expect(JSON.parse(s.stdout)).toEqual([expect.objectContaining({ name: 'default', state: 'up', leases: 1 })]);
    const d = await vnetd.cli(['down', 'default'], { user: 'nobody' });
    expect(d.exitCode).toBe(3); // permission denied
    expect(d.stderr).toMatch(/uid 65534 may not bring down network "default"/);
    // and nothing changed
    expect(await linkNames(host)).toContain('virbr0');
    expect((await vnetTable(host)).exitCode).toBe(0);
    expect(vnetd.children('dnsmasq')).toHaveLength(1);
  });

  it('malformed requests get an error reply and the daemon keeps serving', async () => {
    const reply = await new Promise<string>((resolve) => {
      const s = net.createConnection(vnetd.socket, () => s.write(Buffer.from([0, 0, 0, 5, 0x7b, 0x7b, 0x7b, 0x7b, 0x7b])));
      let got = Buffer.alloc(0);
      s.on('data', (d) => (got = Buffer.concat([got, d])));
      s.on('close', () => resolve(got.subarray(4).toString()));
    });
    expect(JSON.parse(reply)).toEqual({ id: 0, ok: false, error: { code: 'EPROTO', message: 'frame is not valid JSON' } });
    await expect(vnetd.call('bogus')).rejects.toThrow(/unknown method "bogus"/);
    expect(await vnetd.call('ping')).toMatchObject({ pong: true });
  });

  it('up is idempotent', async () => {
    const before = await host.nftRuleset();
    const r = await vnetd.cli(['up', 'default']);
    expect(r.exitCode).toBe(0);
    expect(await host.nftRuleset()).toBe(before);
    expect(vnetd.children('dnsmasq')).toHaveLength(1);
  });

  it('down leaves no bridge, no vnet table, no dnsmasq, forwarding off, the foreign table unchanged', async () => {
    const r = await vnetd.cli(['down', 'default']);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(await linkNames(host)).not.toContain('virbr0');
    expect((await vnetTable(host)).exitCode).not.toBe(0);
    expect(vnetd.children('dnsmasq')).toHaveLength(0);
    expect((await host.run('cat', ['/proc/sys/net/ipv4/ip_forward'])).trim()).toBe('0');
    expect(await host.run('nft', ['list', 'table', 'inet', 'foreign'])).toBe(foreignBefore);
    const again = await vnetd.cli(['down', 'default']);
    expect(again.exitCode).toBe(0);
  });
});

describe('bad input changes nothing', () => {
  it.each([
    ['bad-address', 'bridge = "vnbad0"\naddress = "10.50.0.300/24"\n', /bad-address\.toml: key `address` = "10\.50\.0\.300\/24"/],
    ['long-name', 'bridge = "abcdefghijklmnop"\naddress = "10.51.0.1/24"\n', /long-name\.toml: key `bridge` = "abcdefghijklmnop": bridge name must be at most 15 bytes/],
    ['slash', 'bridge = "a/b"\naddress = "10.52.0.1/24"\n', /slash\.toml: key `bridge` = "a\/b"/],
    ['space', 'bridge = "a b"\naddress = "10.53.0.1/24"\n', /space\.toml: key `bridge` = "a b"/],
    ['ctrl', 'bridge = "a\\u0007b"\naddress = "10.54.0.1/24"\n', /ctrl\.toml: key `bridge`/],
    ['unknown', 'bridge = "vnx0"\naddress = "10.55.0.1/24"\ncolour = "blue"\n', /unknown\.toml: key `colour`: unknown key/],
    ['overlap', 'bridge = "vnov0"\naddress = "192.168.122.200/25"\n', /overlap\.toml: key `address` = "192\.168\.122\.128\/25": subnet overlaps 192\.168\.122\.0\/24 of network "default"/],
    ['uplink', 'bridge = "vnup0"\naddress = "198.51.100.77/24"\n', /subnet 198\.51\.100\.0\/24 is already in use by interface up0/],
  ])('%s: an error naming file, key and value, exit 1, no bridge, rule or process', async (name, toml, message) => {
    writeFileSync(path.join(vnetd.env.VNET_CONFIG_DIR, 'networks', `${name}.toml`), toml);
    const linksBefore = await linkNames(host);
    const rulesBefore = await host.nftRuleset();
    const r = await vnetd.cli(['up', name]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(message);
    expect(await linkNames(host)).toEqual(linksBefore);
    expect(await host.nftRuleset()).toBe(rulesBefore);
    expect(vnetd.children('dnsmasq')).toHaveLength(0);
  });

  it('vnet check reports every bad file and exits 1', async () => {
    const r = await vnetd.cli(['check']);
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toMatch(/^ok\s+default \(built-in\): virbr0 192\.168\.122\.1\/24$/m);
    for (const name of ['bad-address', 'long-name', 'slash', 'space', 'ctrl', 'unknown', 'overlap'])
      expect(r.stderr).toMatch(new RegExp(`^error\\s+\\S*/${name}\\.toml: key`, 'm'));
    // a subnet clash with the host is named too, in the words `vnet up` refuses it with
    expect(r.stderr).toMatch(/^error\s+\S*\/uplink\.toml: network "uplink": subnet 198\.51\.100\.0\/24 is already in use by interface up0 \(route 198\.51\.100\.0\/24\); choose another `address`$/m);
    expect(r.stdout).not.toMatch(/^ok\s+uplink /m);
  });

  it('an unknown network is a clear error', async () => {
    const r = await vnetd.cli(['up', 'nosuch']);
    expect(r.exitCode).toBe(4); // unknown network
    expect(r.stderr).toMatch(/no network or bridge named "nosuch" \(defined: default \(virbr0\)/);
  });
});

describe('no vnetd', () => {
  it('a user who cannot start it is told why and how; nothing is started', async () => {
    const none = new Vnetd(host, vnetEnv());
    const r = await none.cli(['up', 'default'], { user: 'nobody' });
    expect(r.exitCode).toBe(6); // vnetd unreachable
    expect(r.stderr).toBe(
      `vnet: vnetd is not running (no socket at ${none.socket}); start it as root (\`sudo vnet up NAME\` or \`systemctl start vnetd.socket\`)`,
    );
    expect(existsSync(none.env.VNET_RUNTIME_DIR)).toBe(false); // no vnetd was started for nobody
    // a file left where the socket was, nobody listening (vnetd killed): connect is refused
    mkdirSync(none.env.VNET_RUNTIME_DIR, { recursive: true });
    writeFileSync(none.socket, '');
    const s = await none.cli(['status']);
    // the defined networks, all down, and why: exit 6
    expect(s.exitCode).toBe(6);
    expect(s.stdout).toMatch(/^default\s+virbr0\s+down\s+192\.168\.122\.0\/24/m);
    expect(s.stderr).toMatch(/^vnet: vnetd is not running \(nothing listens on .*vnetd\.sock\); every network is down/);
    expect(await linkNames(host)).not.toContain('virbr0');
  });
});
