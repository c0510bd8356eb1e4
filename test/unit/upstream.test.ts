import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dhcp } from '../../src/desired/contributors/dhcp.js';
import type { DesiredNetwork } from '../../src/desired/model.js';
import { parseResolvConf, UpstreamServers } from '../../src/dhcp/upstream.js';
import { builtinDefault } from '../../src/spec/parse.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'vnet-upstream-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('parseResolvConf', () => {
  it('takes the nameserver lines in order, loopback ones too, and nothing else', () => {
    const text = [
      '# generated',
      'search example.org',
      'nameserver 127.0.0.53',
      'options edns0 trust-ad',
      'nameserver   192.0.2.1   # office',
      '\tnameserver 192.0.2.9',
      'nameserver 2001:db8::53',
      'nameserver fe80::1%eth0',
      '; nameserver 192.0.2.2',
      'nameserver 192.0.2.1',
      'nameserver example.org',
      'nameserver 192.0.2.300',
      'nameserver 1.2.3.4,5.6.7.8',
      'nameserver ::1',
      'nameserverx 192.0.2.3',
    ].join('\n');
    expect(parseResolvConf(text)).toEqual(['127.0.0.53', '192.0.2.1', '2001:db8::53', 'fe80::1%eth0', '::1']);
    expect(parseResolvConf('')).toEqual([]);
  });
});

describe('UpstreamServers', () => {
  it('reads the file, again only after it changed, and gives none when it is missing or not a file', () => {
    const file = path.join(dir, 'resolv.conf');
    const u = new UpstreamServers(file);
    expect(u.current()).toEqual([]);
    writeFileSync(file, 'nameserver 192.0.2.1\n');
    expect(u.current()).toEqual(['192.0.2.1']);
    const first = u.current();
    expect(u.current()).toBe(first); // unchanged file: the same list, not read again
    // replaced the way resolvconf and NetworkManager do it: a new file renamed over the old
    writeFileSync(`${file}.new`, 'nameserver 192.0.2.7\nnameserver 192.0.2.8\n');
    renameSync(`${file}.new`, file);
    expect(u.current()).toEqual(['192.0.2.7', '192.0.2.8']);
    rmSync(file);
    expect(u.current()).toEqual([]);
    expect(new UpstreamServers(dir).current()).toEqual([]);
  });
});

describe('the dhcp contributor', () => {
  it('writes the upstream servers it is given into every network it configures', () => {
    let asked = 0;
    const c = dhcp({ runtimeDir: '/run/vnet', stateDir: '/var/lib/vnet', upstream: () => (asked++, ['192.0.2.53']) });
    const n: DesiredNetwork = { name: 'default', spec: builtinDefault(), level: 'up', addresses: [], linkSysctls: [], hostFirewall: false };
    c.network!(n);
    expect(n.dhcp!.text).toMatch(/^no-resolv\nserver=192\.0\.2\.53$/m);
    expect(asked).toBe(1);
    const down: DesiredNetwork = { ...n, level: 'down', dhcp: undefined };
    c.network!(down);
    expect(down.dhcp).toBeUndefined();
  });
});
