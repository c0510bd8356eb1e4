import { mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  LeaseFileError,
  MAX_FILE_BYTES,
  MAX_LEASES,
  MAX_LINE_BYTES,
  parseLeaseChunks,
  parseLeaseLine,
  parseLeases,
  readLeaseFile,
  readLeases,
  watchLeases,
  type LeaseEvent,
} from '../../src/dhcp/leases.js';

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

  it('reads the IPv6 section after the duid line: the IAID where a MAC would be, the DUID as client id', () => {
    const text = FILE + 'duid 00:01:00:01:2c:aa:bb:cc\n1795655430 1234 fd00::5 host6 00:01:00:01\n';
    const { leases, malformed } = parseLeases(text);
    expect(leases).toHaveLength(4);
    expect(leases[3]).toEqual({ expires: 1795655430, mac: '', ip: 'fd00::5', hostname: 'host6', clientId: '00:01:00:01', iaid: '1234' });
    expect(malformed).toBe(0);
  });

  it('accepts non-Ethernet hardware addresses as dnsmasq writes them', () => {
    expect(parseLeaseLine('100 6-00:11:22:33:44:55 10.0.0.5 h *')?.mac).toBe('6-00:11:22:33:44:55');
  });
});

/**
 * The longest line a valid file can hold: 12-digit expiry, a hardware address of type ffff with
 * 20 octets, the longest dotted quad, a 255-byte host name, a 255-byte client id.
 */
function longestLine(): string {
  const mac = `ffff-${Array(20).fill('ab').join(':')}`;
  const cid = Array(255).fill('ff').join(':');
  return `999999999999 ${mac} 255.255.255.255 ${'h'.repeat(255)} ${cid}\n`;
}

describe('the size cap', () => {
  it('is MAX_LEASES lines of the longest line the parser accepts (plus 4 KiB), and such a line parses', () => {
    const line = longestLine();
    expect(line.length).toBe(MAX_LINE_BYTES);
    expect(parseLeaseLine(line)).toMatchObject({ expires: 999999999999, hostname: 'h'.repeat(255) });
    // one byte more in any field is no lease dnsmasq writes
    expect(parseLeaseLine(line.replace(' hhh', ' hhhh'))).toBeUndefined();
    expect(parseLeaseLine(line.replace(/ (ff:)/, ' ff:$1'))).toBeUndefined();
    expect(MAX_FILE_BYTES).toBe(MAX_LEASES * MAX_LINE_BYTES + 4096);
  });

  it('a file of 65535 longest lines (the largest a definition allows) is read whole', async () => {
    const f = path.join(dir, 'largest.leases');
    writeFileSync(f, Buffer.alloc(MAX_LEASES * MAX_LINE_BYTES, longestLine(), 'latin1'));
    const r = await readLeaseFile(f);
    expect(r.malformed).toBe(0);
    expect(r.leases).toHaveLength(MAX_LEASES);
    expect(r.leases[MAX_LEASES - 1]!.clientId).toHaveLength(764);
    rmSync(f);
  }, 60_000);

  it('a file with more leases than any network may hold is refused, naming the count', async () => {
    const f = path.join(dir, 'many.leases');
    writeFileSync(f, FILE);
    await expect(readLeaseFile(f, { maxLeases: 2 })).rejects.toThrow(new LeaseFileError(f, 'holds more than 2 leases, more than any network may have'));
    await expect(readLeaseFile(f, { maxBytes: 100 })).rejects.toThrow(/is 1\d\d bytes, over the 100-byte limit/);
  });
});

describe('parseLeaseChunks', () => {
  it('gives what parseLeases gives, whatever the chunks', async () => {
    const text = FILE + 'garbage\n' + 'duid 00:01\n1795655430 1234 fd00::5 host6 00:01\n';
    const whole = parseLeases(text);
    expect(await parseLeaseChunks([...text])).toEqual(whole);
    expect(await parseLeaseChunks([text.slice(0, 50), text.slice(50)])).toEqual(whole);
  });

  it('gives what parseLeases gives for any text cut anywhere (property)', async () => {
    const line = fc.oneof(
      fc.constantFrom(...FILE.split('\n'), 'garbage', 'duid 00:01', '', '  '),
      fc.nat({ max: 2000 }).map((n) => `1795655430 52:54:00:00:00:01 10.0.0.1 ${'h'.repeat(n)} *`),
      fc.string({ maxLength: 40 }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(line, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 6 }), async (lines, cuts) => {
        const text = lines.join('\n');
        const at = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
        const parts = [0, ...at].map((from, i) => text.slice(from, [...at, text.length][i]));
        expect(await parseLeaseChunks(parts, Infinity)).toEqual(parseLeases(text));
      }),
      { numRuns: 300 },
    );
  });

  it('counts an overlong line as one malformed line without keeping it, across chunks', async () => {
    const long = `1795655430 52:54:00:00:00:01 10.0.0.1 ${'x'.repeat(3000)} *`;
    const text = `${long}\n${FILE}`;
    const chunks = text.match(/[^]{1,700}/g)!;
    const r = await parseLeaseChunks(chunks);
    expect(r.malformed).toBe(1);
    expect(r.leases).toHaveLength(3);
  });

  it('yields to the event loop while it parses: a timer set when the parse begins fires before it ends, even for one big chunk', async () => {
    const text = longestLine().repeat(20_000); // 22 MB in a single chunk
    let fired = false;
    const parsing = parseLeaseChunks([text], Infinity);
    setTimeout(() => (fired = true), 0);
    const r = await parsing;
    expect(r.leases).toHaveLength(20_000);
    expect(fired).toBe(true);
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
  it('hands out the events of a file that gains a thousand leases at once in slices, letting the event loop run between them', async () => {
    const f = path.join(dir, 'burst.leases');
    writeFileSync(f, '');
    let events = 0;
    let seenByImmediate: number | undefined;
    const w = watchLeases(
      f,
      () => {
        events += 1;
        if (events === 1) setImmediate(() => (seenByImmediate = events));
      },
      { debounceMs: 20 },
    );
    await w.ready;
    try {
      const lines = Array.from({ length: 1000 }, (_, i) => `1795655430 52:54:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')} 10.88.${i >> 8}.${i & 255} * *`);
      await writeFile(`${f}.new`, lines.join('\n') + '\n');
      renameSync(`${f}.new`, f);
      await expect.poll(() => events, { timeout: 5000 }).toBe(1000);
      expect(seenByImmediate).toBeGreaterThan(0);
      expect(seenByImmediate).toBeLessThan(1000);
    } finally {
      w.close();
    }
  });

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
