import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LeaseFileError, parseLeaseLine, parseLeases, readLeaseFile, readLeases, watchLeases, type LeaseEvent } from '../../src/dhcp/leases.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'vnet-leases-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const FILE = [
  '1795655430 46:6a:4e:30:5e:96 10.88.0.105 guest1 01:46:6a:4e:30:5e:96',
  '1795655500 52:54:00:AB:cd:01 10.88.0.106 * *',
  '0 52:54:00:00:00:02 10.88.0.107 static-vm ff:00:01:02',
  '',
].join('\n');

describe('parseLeases', () => {
  it('reads dnsmasq lease lines, mapping "*" to ""', () => {
    const { leases, malformed } = parseLeases(FILE);
    expect(malformed).toBe(0);
    expect(leases).toEqual([
      { expires: 1795655430, mac: '46:6a:4e:30:5e:96', ip: '10.88.0.105', hostname: 'guest1', clientId: '01:46:6a:4e:30:5e:96' },
      { expires: 1795655500, mac: '52:54:00:ab:cd:01', ip: '10.88.0.106', hostname: '', clientId: '' },
      { expires: 0, mac: '52:54:00:00:00:02', ip: '10.88.0.107', hostname: 'static-vm', clientId: 'ff:00:01:02' },
    ]);
  });

  it('skips and counts malformed lines, keeping the good ones', () => {
    const text = [
      '1795655430 46:6a:4e:30:5e:96 10.88.0.105 guest1 *',
      '1795655430 46:6a:4e:30:5e:96 10.88.0.105', // truncated
      'soon 46:6a:4e:30:5e:96 10.88.0.105 a *', // bad expiry
      '1795655430 not-a-mac 10.88.0.105 a *',
      '1795655430 46:6a:4e:30:5e:97 10.88.0.256 a *', // bad address
      '1795655430 46:6a:4e:30:5e:97 10.88.0.9 a * extra',
      '17956554', // a write cut short
      '1795655431 46:6a:4e:30:5e:98 10.88.0.108 b *',
    ].join('\n');
    const { leases, malformed } = parseLeases(text);
    expect(malformed).toBe(6);
    expect(leases.map((l) => l.ip)).toEqual(['10.88.0.105', '10.88.0.108']);
  });

  it('skips the IPv6 section after a duid line without counting it as malformed', () => {
    const text = FILE + 'duid 00:01:00:01:2c:aa:bb:cc\n1795655430 1234 fd00::5 host6 00:01:00:01\n';
    const { leases, malformed } = parseLeases(text);
    expect(leases).toHaveLength(3);
    expect(malformed).toBe(0);
  });

  it('accepts non-Ethernet hardware addresses as dnsmasq writes them', () => {
    expect(parseLeaseLine('100 6-00:11:22:33:44:55 10.0.0.5 h *')?.mac).toBe('6-00:11:22:33:44:55');
  });
});

describe('readLeases', () => {
  it('returns [] for a missing file', async () => {
    expect(await readLeases(path.join(dir, 'missing.leases'))).toEqual([]);
  });

  it('reads a file and reports the malformed count', async () => {
    const f = path.join(dir, 'a.leases');
    writeFileSync(f, FILE + 'garbage\n');
    const r = await readLeaseFile(f);
    expect(r.leases).toHaveLength(3);
    expect(r.malformed).toBe(1);
  });

  it('refuses to follow a symlink', async () => {
    const target = path.join(dir, 'target.leases');
    writeFileSync(target, FILE);
    const link = path.join(dir, 'link.leases');
    symlinkSync(target, link);
    await expect(readLeases(link)).rejects.toThrow(LeaseFileError);
    await expect(readLeases(link)).rejects.toThrow(/link\.leases: is a symlink/);
  });
});

describe('watchLeases', () => {
  it('reports leases added and removed', async () => {
    const f = path.join(dir, 'w.leases');
    writeFileSync(f, '1795655430 46:6a:4e:30:5e:96 10.88.0.105 guest1 *\n');
    const events: LeaseEvent[] = [];
    const w = watchLeases(f, (e) => events.push(e), { debounceMs: 20 });
    await w.ready;
    try {
      await writeFile(f, '1795655430 46:6a:4e:30:5e:96 10.88.0.105 guest1 *\n1795655431 52:54:00:00:00:09 10.88.0.109 g2 *\n');
      await expect.poll(() => events.length, { timeout: 3000 }).toBe(1);
      expect(events[0]).toMatchObject({ type: 'added', lease: { ip: '10.88.0.109', hostname: 'g2' } });
      await writeFile(f, '1795655431 52:54:00:00:00:09 10.88.0.109 g2 *\n');
      await expect.poll(() => events.length, { timeout: 3000 }).toBe(2);
      expect(events[1]).toMatchObject({ type: 'removed', lease: { ip: '10.88.0.105', mac: '46:6a:4e:30:5e:96' } });
    } finally {
      w.close();
    }
  });
});
