/**
 * Back-to-back hand-offs whose taps the client closes at once never trip the tap
 * quota (VNET_TAP_QUOTA=16 here): the quota counts the taps a client still holds, not the
 * ones being torn down. A client that does hold its taps is still stopped by it.
 * (`make bench` runs the long loop: 1,000 hand-offs through the helper with the default quota.)
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driverAsNobody, NOBODY } from '../support/driver.js';
import { cleanupAll, hostAndWan, waitFor, type Netns } from '../support/netns.js';
import { ROOT, Vnetd, vnetEnv } from '../support/vnetd.js';

const LOOP = path.join(ROOT, 'test/support/drivers/tap-loop.py');
const QUOTA = 16;

let host: Netns;
let vnetd: Vnetd;

interface Done {
  n: number;
  ok: number;
  failed: number;
  errors: Record<string, number>;
  seconds: number;
}

/** tap-loop.py as nobody: n tap requests one after the other; with hold, the taps stay open until release(). */
function loop(n: number, hold = false) {
  const d = driverAsNobody(LOOP, { socket: vnetd.socket, bridge: 'virbr0', n, hold });
  const release = async () => {
    d.proc.stdin!.end();
    await d.proc;
  };
  return { done: d.line<Done>('done'), release, kill: () => d.proc.kill('SIGKILL') };
}

async function nobodyTaps(): Promise<number> {
  const s = (await vnetd.call('status', { name: 'default' })) as { taps: Array<{ uid: number }> };
  return s.taps.filter((t) => t.uid === NOBODY).length;
}

beforeAll(async () => {
  ({ host } = await hostAndWan());
  vnetd = await new Vnetd(host, vnetEnv({ VNET_TAP_QUOTA: String(QUOTA) })).start();
  const up = await vnetd.cli(['up', 'default']);
  expect(up.exitCode, up.stderr).toBe(0);
});

afterAll(async () => {
  await vnetd?.stop();
  await cleanupAll();
});

describe('back-to-back hand-offs', () => {
  it(`200 from one uid, each tap closed at once, all succeed with a quota of ${QUOTA}`, { timeout: 180_000 }, async () => {
    const run = loop(200);
    try {
      const done = await run.done;
      expect(done).toEqual({ n: 200, ok: 200, failed: 0, errors: {}, seconds: expect.any(Number) });
    } finally {
      await run.release();
    }
    await waitFor('no taps left in the kernel', async () => (await host.taps()).length === 0, 5000);
    await waitFor('status without nobody’s taps', async () => (await nobodyTaps()) === 0, 5000);
  });

  it('a client that holds its taps is stopped by the quota, and served again once it lets them go', { timeout: 120_000 }, async () => {
    const held = loop(QUOTA + 4, true);
    try {
      const done = await held.done;
      const message = `uid ${NOBODY} already holds ${QUOTA} taps, the most one user may hold (quota ${QUOTA})`;
      expect(done).toEqual({ n: QUOTA + 4, ok: QUOTA, failed: 4, errors: { [message]: 4 }, seconds: expect.any(Number) });
      expect(await nobodyTaps()).toBe(QUOTA);
      expect((await host.taps()).length).toBe(QUOTA);
    } finally {
      await held.release();
    }
    await waitFor('the held taps gone', async () => (await host.taps()).length === 0, 10_000);
    const again = loop(1);
    try {
      expect(await again.done).toMatchObject({ ok: 1, failed: 0 });
    } finally {
      await again.release();
    }
  });
});
