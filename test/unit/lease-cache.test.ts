import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LeaseCache } from '../../src/dhcp/lease-cache.js';
import { MAX_FILE_BYTES, readLeaseFile } from '../../src/dhcp/leases.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'vnet-lease-cache-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const LINE_A = '1795655430 52:54:00:00:00:0a 10.88.0.10 a *\n';
const LINE_B = '1795655431 52:54:00:00:00:0b 10.88.0.11 b *\n';

/** a cache whose reads are counted; no gap between parses unless asked */
function counted(opts: { gapFactor?: number; now?: () => number } = {}) {
  const reads: string[] = [];
  const cache = new LeaseCache({
    gapFactor: 0,
    ...opts,
    read: (file) => {
      reads.push(file);
      return readLeaseFile(file);
    },
  });
  return { cache, reads };
}

/** Write `text` with an mtime well in the past, in whole seconds (an old, settled version of the file). */
function writeOld(file: string, text: string, secondsAgo = 100): void {
  writeFileSync(file, text);
  const t = Math.floor(Date.now() / 1000) - secondsAgo;
  utimesSync(file, t, t);
}

describe('LeaseCache', () => {
  it('parses an unchanged file once, however often and however concurrently it is asked', async () => {
    const f = path.join(dir, 'same.leases');
    writeOld(f, LINE_A + LINE_B);
    const { cache, reads } = counted();
    const all = await Promise.all([cache.get(f), cache.get(f), cache.get(f)]);
    const again = await cache.get(f);
    expect(reads).toHaveLength(1);
    expect(all[0]!.leases.map((l) => l.hostname)).toEqual(['a', 'b']);
    for (const s of [...all, again]) expect(s).toBe(all[0]);
    expect(again.problem).toBeUndefined();
  });

  it('parses again when the file changes: new content, or the same size and mtime (ctime moved), or a replaced file', async () => {
    const f = path.join(dir, 'changing.leases');
    writeOld(f, LINE_A);
    const { cache, reads } = counted();
    expect((await cache.get(f)).leases.map((l) => l.hostname)).toEqual(['a']);
    writeOld(f, LINE_A + LINE_B, 90);
    expect((await cache.get(f)).leases.map((l) => l.hostname)).toEqual(['a', 'b']);
    // same inode, same size, mtime set back to what it was: only the ctime tells
    const { mtimeMs } = statSync(f);
    writeFileSync(f, LINE_A.replace(' a ', ' c ') + LINE_B);
    utimesSync(f, mtimeMs / 1000, mtimeMs / 1000);
    expect(statSync(f).mtimeMs).toBe(mtimeMs);
    expect((await cache.get(f)).leases.map((l) => l.hostname)).toEqual(['c', 'b']);
    // replaced by rename (a new inode)
    writeOld(`${f}.new`, LINE_B, 80);
    execFileSync('mv', [`${f}.new`, f]);
    expect((await cache.get(f)).leases.map((l) => l.hostname)).toEqual(['b']);
    expect(reads).toHaveLength(4);
    await cache.get(f);
    expect(reads).toHaveLength(4);
  });

  it('reads a version modified at (or after) its read again next time: its timestamps may not show the next change', async () => {
    const f = path.join(dir, 'racy.leases');
    writeFileSync(f, LINE_A);
    const future = Date.now() / 1000 + 60;
    utimesSync(f, future, future);
    const { cache, reads } = counted();
    await cache.get(f);
    await cache.get(f);
    expect(reads).toHaveLength(2);
  });

  it('parses a file that keeps changing no sooner than gapFactor times its last parse took, serving the last snapshot meanwhile', async () => {
    const f = path.join(dir, 'churn.leases');
    writeOld(f, LINE_A);
    let clock = 1000;
    const { cache, reads } = counted({ gapFactor: 4, now: () => clock });
    const read = cache.get(f);
    clock += 100; // this parse "took" 100 ms: the next waits until 400 ms after it
    expect((await read).leases.map((l) => l.hostname)).toEqual(['a']);
    writeOld(f, LINE_A + LINE_B, 90);
    clock += 399;
    expect((await cache.get(f)).leases.map((l) => l.hostname)).toEqual(['a']);
    expect(reads).toHaveLength(1);
    clock += 1;
    expect((await cache.get(f)).leases.map((l) => l.hostname)).toEqual(['a', 'b']);
    expect(reads).toHaveLength(2);
  });

  it('a missing file has no leases and no problem', async () => {
    const { cache } = counted();
    expect(await cache.get(path.join(dir, 'missing.leases'))).toEqual({ leases: [], malformed: 0 });
  });

  it('a file over the cap is a problem, not a throw, and is not read again until it changes', async () => {
    const f = path.join(dir, 'huge.leases');
    writeOld(f, '');
    truncateSync(f, MAX_FILE_BYTES + 1); // sparse: no disk used
    utimesSync(f, Date.now() / 1000 - 100, Date.now() / 1000 - 100);
    const { cache, reads } = counted();
    const s = await cache.get(f);
    expect(s.leases).toEqual([]);
    expect(s.problem).toBe(
      `lease file ${f}: is ${MAX_FILE_BYTES + 1} bytes, over the ${MAX_FILE_BYTES}-byte limit (65535 leases of the longest line dnsmasq writes)`,
    );
    await cache.get(f);
    expect(reads).toHaveLength(1);
    writeOld(f, LINE_A, 50); // mended
    const mended = await cache.get(f);
    expect(mended.problem).toBeUndefined();
    expect(mended.leases).toHaveLength(1);
  });

  it('a folder, a FIFO or a symlink at the lease path is a problem of its own (and a FIFO does not hang)', async () => {
    const folder = path.join(dir, 'folder.leases');
    mkdirSync(folder);
    const fifo = path.join(dir, 'fifo.leases');
    execFileSync('mkfifo', [fifo]);
    const link = path.join(dir, 'link.leases');
    writeFileSync(path.join(dir, 'target'), LINE_A);
    symlinkSync(path.join(dir, 'target'), link);
    const cache = new LeaseCache();
    expect((await cache.get(folder)).problem).toBe(`lease file ${folder}: is not a regular file`);
    expect((await cache.get(fifo)).problem).toBe(`lease file ${fifo}: is not a regular file`);
    expect((await cache.get(link)).problem).toBe(`lease file ${link}: is a symlink; not reading it`);
  });

  it('a read that fails is a problem naming the file and the error', async () => {
    const f = path.join(dir, 'eio.leases');
    writeOld(f, LINE_A);
    const cache = new LeaseCache({
      read: async () => {
        throw Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' });
      },
    });
    expect(await cache.get(f)).toEqual({ leases: [], malformed: 0, problem: `lease file ${f}: EIO: i/o error, read` });
  });

  it('orders the snapshot by address, then MAC', async () => {
    const f = path.join(dir, 'order.leases');
    writeOld(f, LINE_B + '1795655430 52:54:00:00:00:01 10.88.0.9 c *\n' + LINE_A);
    const s = await new LeaseCache().get(f);
    expect(s.leases.map((l) => l.ip)).toEqual(['10.88.0.9', '10.88.0.10', '10.88.0.11']);
  });
});
