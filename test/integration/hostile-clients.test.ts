/**
 * A client that stops reading must not freeze vnetd for everyone. An unprivileged
 * process (nobody) holds several connections whose replies back up: each is fed pings it
 * never reads until vnetd's buffer towards it is all but full, then tap requests for virbr0,
 * whose replies (each with its tap fd) find no room. Meanwhile root's `vnet status` and
 * another user's hand-off through the real helper are each served within 2 s (a generous
 * correctness bound), vnetd drops the clients that do not read, and nothing is left behind.
 */
import type { ResultPromise } from 'execa';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handoff } from '../support/handoff.js';
import { driverAsNobody, NOBODY } from '../support/driver.js';
import { cleanupAll, hostAndWan, waitFor, type Netns } from '../support/netns.js';
import { ROOT, Vnetd, vnetEnv } from '../support/vnetd.js';

const DRIVER = path.join(ROOT, 'test/support/drivers/hostile-clients.py');
const OTHER_UID = 23456;
/** the correctness bound: served, not stuck behind the hostile clients */
const BOUND_MS = 2000;

let host: Netns;
let vnetd: Vnetd;

interface Status {
  name: string;
  state: string;
  taps: Array<{ uid: number }>;
}

beforeAll(async () => {
  ({ host } = await hostAndWan());
  vnetd = await new Vnetd(host, vnetEnv()).start();
  const up = await vnetd.cli(['up', 'default']);
  expect(up.exitCode, up.stderr).toBe(0);
});

afterAll(async () => {
  await vnetd?.stop();
  await cleanupAll();
});

/** The hostile driver as nobody; resolves its "ready" line. */
function startHostile(): { proc: ResultPromise; ready: Promise<{ pings: number; connections: number }>; output: () => string } {
  const d = driverAsNobody(DRIVER, { socket: vnetd.socket, bridge: 'virbr0', connections: 6 });
  return { proc: d.proc, ready: d.line('ready', 30_000), output: d.output };
}

describe('clients that do not read their replies', () => {
  it('do not hold up root’s `vnet status` or another user’s hand-off, and are dropped', { timeout: 180_000 }, async () => {
    const logMark = vnetd.log.length;
    const hostile = startHostile();
    try {
      const ready = await hostile.ready;
      expect(ready.pings).toBeGreaterThan(10); // its replies really filled a buffer
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        const st = await vnetd.cli(['status']);
        const statusMs = performance.now() - t0;
        expect(st.exitCode, st.stderr).toBe(0);
        expect(st.stdout).toMatch(/^default\s+virbr0\s+up/m);
        expect(statusMs, 'root’s `vnet status` while nobody’s clients do not read').toBeLessThan(BOUND_MS);

        const t1 = performance.now();
        const h = await handoff('virbr0', { runtimeDir: vnetd.env.VNET_RUNTIME_DIR, uid: OTHER_UID });
        const handoffMs = performance.now() - t1;
        expect(h.result).toMatchObject({ exit: 0, stderr: '', byte: 0, nfds: 1 });
        expect(handoffMs, 'another user’s hand-off while nobody’s clients do not read').toBeLessThan(BOUND_MS);
      }
      // vnetd drops the clients whose tap replies find no room, and says so (one line per uid per window)
      await waitFor('vnetd to drop a client that does not read', () => /^\{"dropped": \d+\}$/m.test(hostile.output()), 15_000);
      expect(vnetd.log.slice(logMark)).toMatch(/"uid":65534[^\n]*"msg":"client dropped"/);
    } finally {
      hostile.proc.stdin!.end();
      const timer = setTimeout(() => hostile.proc.kill('SIGKILL'), 5000);
      await hostile.proc;
      clearTimeout(timer);
    }

    // nothing left: nobody's taps go with its connections; vnetd serves on
    await waitFor('nobody’s taps gone', async () => {
      const s = (await vnetd.call('status', { name: 'default' })) as Status;
      return s.taps.every((t) => t.uid !== NOBODY);
    }, 15_000);
    expect(await vnetd.call('ping')).toMatchObject({ pong: true });
    expect(vnetd.log.slice(logMark)).not.toMatch(/"level":[56]0/);
  });
});
