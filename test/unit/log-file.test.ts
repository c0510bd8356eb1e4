import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { CappedLogFile, DEFAULT_LOG_MAX_BYTES } from '../../src/daemon/log-file.js';

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'vnet-logfile-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('CappedLogFile', () => {
  it('caps vnetd.log at 8 MiB by default', () => {
    const f = new CappedLogFile(path.join(tmp(), 'vnetd.log'));
    expect(f.maxBytes).toBe(DEFAULT_LOG_MAX_BYTES);
    expect(DEFAULT_LOG_MAX_BYTES).toBe(8 * 1024 * 1024);
    f.close();
  });

  it('appends to what is there, and rotates to FILE.1 before passing the cap: both stay at most the cap', () => {
    const file = path.join(tmp(), 'vnetd.log');
    writeFileSync(file, 'earlier line\n');
    const f = new CappedLogFile(file, { maxBytes: 1000 });
    const line = (i: number) => `line ${String(i).padStart(5, '0')} ${'x'.repeat(80)}\n`; // 92 bytes
    for (let i = 0; i < 5000; i += 1) f.write(line(i));
    f.close();
    const cur = readFileSync(file, 'utf8');
    const old = readFileSync(`${file}.1`, 'utf8');
    expect(statSync(file).size).toBeLessThanOrEqual(1000);
    expect(statSync(`${file}.1`).size).toBeLessThanOrEqual(1000);
    // nothing else next to them: one rotated file only
    expect(existsSync(`${file}.2`)).toBe(false);
    // the newest lines are in FILE, the ones just before in FILE.1, in order and whole
    expect(cur.endsWith(line(4999))).toBe(true);
    const all = (old + cur).split('\n').filter(Boolean);
    const nums = all.map((l) => Number(/^line (\d+) /.exec(l)![1]));
    expect(nums).toEqual(Array.from({ length: nums.length }, (_, k) => 4999 - nums.length + 1 + k));
    expect(nums.length).toBeGreaterThanOrEqual(10);
  });

  it('the first rotation keeps what the file held before (in FILE.1)', () => {
    const file = path.join(tmp(), 'vnetd.log');
    writeFileSync(file, 'a'.repeat(950) + '\n');
    const f = new CappedLogFile(file, { maxBytes: 1000 });
    f.write('b'.repeat(99) + '\n');
    f.close();
    expect(readFileSync(`${file}.1`, 'utf8')).toBe('a'.repeat(950) + '\n');
    expect(readFileSync(file, 'utf8')).toBe('b'.repeat(99) + '\n');
  });

  it('a line longer than the cap still goes whole, into a file of its own', () => {
    const file = path.join(tmp(), 'vnetd.log');
    const f = new CappedLogFile(file, { maxBytes: 100 });
    f.write('short\n');
    f.write('L'.repeat(300) + '\n');
    f.write('next\n');
    f.close();
    expect(readFileSync(`${file}.1`, 'utf8')).toBe('L'.repeat(300) + '\n');
    expect(readFileSync(file, 'utf8')).toBe('next\n');
  });

  it('is a pino destination', () => {
    const file = path.join(tmp(), 'vnetd.log');
    const f = new CappedLogFile(file, { maxBytes: 4096 });
    const log = pino({ level: 'info' }, f);
    for (let i = 0; i < 200; i += 1) log.info({ i }, 'hello');
    f.close();
    const lines = [readFileSync(`${file}.1`, 'utf8'), readFileSync(file, 'utf8')].join('').split('\n').filter(Boolean);
    expect(lines.map((l) => JSON.parse(l).i)).toEqual(Array.from({ length: lines.length }, (_, k) => 200 - lines.length + k));
    expect(statSync(file).size).toBeLessThanOrEqual(4096);
  });

  it('refuses to write through a symlink planted at its path, and never throws into the logger later', () => {
    const d = tmp();
    const target = path.join(d, 'precious');
    writeFileSync(target, 'precious\n');
    symlinkSync(target, path.join(d, 'vnetd.log'));
    expect(() => new CappedLogFile(path.join(d, 'vnetd.log'))).toThrow(/ELOOP/);
    expect(readFileSync(target, 'utf8')).toBe('precious\n');

    // its folder removed under it: writes are dropped (and counted), not thrown
    const d2 = tmp();
    const f = new CappedLogFile(path.join(d2, 'sub.log'), { maxBytes: 50 });
    rmSync(d2, { recursive: true, force: true });
    for (let i = 0; i < 10; i += 1) expect(f.write(`line ${i} ${'z'.repeat(30)}\n`)).toBe(true);
    // the folder back: the next line goes in, after a note of how many were lost
    mkdirSync(d2);
    f.write('back\n');
    f.close();
    const text = readFileSync(path.join(d2, 'sub.log'), 'utf8').split('\n').filter(Boolean);
    expect(JSON.parse(text[0]!).msg).toMatch(/^\d+ log line\(s\) lost: the log file could not be written$/);
    expect(text[1]).toBe('back');
  });
});
