/**
 * vnetd's memory across a churn of hand-offs: RSS after a warm-up, then after `n` more hand-offs
 * (build/handoff, each tap held until the next one is timed), each read once V8 has settled.
 */
import { r1, r2, rssMb, sleep } from '../lib/proc.mjs';
import { NETWORK, VNET_HELPER } from '../lib/vnet.mjs';

export async function churnFigures(b, n, settleS) {
  await b.call('up', { name: NETWORK });
  await b.handoff(VNET_HELPER, 500, { flags: [] });
  await sleep(settleS * 1000);
  const before = rssMb(b.vnetdPid);
  const h = await b.handoff(VNET_HELPER, n, { flags: [], check: false });
  await sleep(settleS * 1000);
  const after = rssMb(b.vnetdPid);
  await b.call('down', { name: NETWORK });
  return { n, ok: h.ok, failed: h.failed, seconds: r1(h.wall_ms / 1000), p50_ms: h.p50_ms, rss_mb_before: before, rss_mb_after: after, growth_pct: r2(((after - before) / before) * 100) };
}
