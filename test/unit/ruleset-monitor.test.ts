/**
 * The ruleset monitor wakes the table check for someone else's change, not for vnet's own
 * transactions (told by nft's "# new generation N by process PID" trailer), and Nft knows the pids
 * of its own transactions. Real processes, a stand-in nft script, no kernel.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { monitorRuleset } from '../../src/firewall/monitor.js';
import { Nft } from '../../src/firewall/nft.js';
import { waitFor } from '../support/netns.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'vnet-monitor-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A stand-in `nft monitor` printing these transactions, each after a pause longer than the debounce. */
function fakeMonitor(name: string, transactions: string[][]): string {
  const file = path.join(dir, name);
  const body = transactions.map((t) => `sleep 0.3\nprintf '%s\\n' ${t.map((l) => `'${l}'`).join(' ')}`).join('\n');
  writeFileSync(file, `#!/bin/sh\n${body}\nexec sleep 60\n`);
  chmodSync(file, 0o755);
  return file;
}

describe('monitorRuleset', () => {
  it('checks after someone else’s transaction, never after vnet’s own', async () => {
    const binary = fakeMonitor('mixed', [
      ['add chain inet vnet to-vns1', '# new generation 2 by process 111 (nft)'],
      ['add rule inet vnet to-vns2 accept', '# new generation 3 by process 112 (nft)'],
      ['flush ruleset', '# new generation 4 by process 999 (nft)'],
      ['add chain inet vnet to-vns3', '# new generation 5 by process 113 (nft)'],
      ['delete table inet vnet', '# new generation 6 by process 998 (nft)'],
    ]);
    let checks = 0;
    const asked: number[] = [];
    const m = monitorRuleset(() => checks++, { binary, debounceMs: 50, ownedBy: (pid) => (asked.push(pid), pid < 900) });
    try {
      await waitFor('every transaction to be seen and checked', () => asked.length === 5 && checks >= 2, 5000);
      // one check for each of the two foreign ones; vnet's own woke nothing (each came 300 ms apart,
      // so each would have had a check of its own)
      expect(asked).toEqual([111, 112, 999, 113, 998]);
      expect(checks).toBe(2);
    } finally {
      m.close();
    }
  });

  it('a change without a trailer counts as someone else’s', async () => {
    const binary = fakeMonitor('bare', [['flush ruleset']]);
    let checks = 0;
    const m = monitorRuleset(() => checks++, { binary, debounceMs: 50, ownedBy: () => true });
    try {
      await waitFor('the check', () => checks === 1, 5000);
    } finally {
      m.close();
    }
  });
});

describe('Nft.ownTransaction', () => {
  it('knows the pid of each of its own transactions, once', async () => {
    const pidFile = path.join(dir, 'pid');
    const binary = path.join(dir, 'fake-nft');
    writeFileSync(binary, `#!/bin/sh\necho $$ > ${pidFile}\n`);
    chmodSync(binary, 0o755);
    const nft = new Nft({ binary, tmpDir: dir });
    await nft.apply({ nftables: [] });
    const pid = Number(readFileSync(pidFile, 'utf8'));
    expect(nft.ownTransaction(pid + 1)).toBe(false);
    expect(nft.ownTransaction(pid)).toBe(true);
    expect(nft.ownTransaction(pid)).toBe(false); // a later nft with the same pid is someone else's
    // a listing changes nothing: not a transaction of vnet's
    writeFileSync(binary, `#!/bin/sh\necho $$ > ${pidFile}\necho '{"nftables": []}'\n`);
    await nft.hasTable();
    expect(nft.ownTransaction(Number(readFileSync(pidFile, 'utf8')))).toBe(false);
  });
});
