/**
 * Tap hand-off as QEMU sees it (build/handoff) on virbr0 of `default` (up): the stock
 * qemu-bridge-helper, build/vnet-bridge-helper asking vnetd, and the floor (build/tap-floor: a static
 * helper that makes the tap itself, as root) in interleaved rounds, so machine noise hits all alike.
 * Then back-to-back hand-offs with each tap closed at once, and the first hand-off on a down
 * network (which brings it up on demand).
 */
import { summary } from '../lib/proc.mjs';
import { NETWORK } from '../lib/vnet.mjs';

export const TARGET_RATIO = 0.8;

export async function handoffFigures(b, opts, fig) {
  process.stderr.write('bench: tap hand-off (stock, vnet, floor)\n');
  await b.cli(['up', NETWORK]);
  await b.handoffStock(opts.warmup);
  await b.handoffVnet(opts.warmup);
  await b.handoffFloor(opts.warmup);
  const got = { stock: [], vnet: [], floor: [] };
  const take = { stock: (n) => b.handoffStock(n), vnet: (n) => b.handoffVnet(n), floor: (n) => b.handoffFloor(n) };
  const orders = [
    ['stock', 'vnet', 'floor'],
    ['vnet', 'floor', 'stock'],
    ['floor', 'stock', 'vnet'],
  ];
  for (let r = 0; r < opts.rounds; r++) for (const which of orders[r % 3]) got[which].push(...(await take[which](opts.perRound)));
  const h = { stock: summary(got.stock), vnet: summary(got.vnet), floor: summary(got.floor) };
  h.p50_ratio = +(h.vnet.p50_ms / h.stock.p50_ms).toFixed(3);
  h.floor_p50_ratio = +(h.floor.p50_ms / h.stock.p50_ms).toFixed(3);
  h.target_ratio = TARGET_RATIO;
  h.target_met = h.p50_ratio <= TARGET_RATIO;
  fig.handoff = h;

  if (opts.loop > 0) {
    process.stderr.write(`bench: ${opts.loop} back-to-back hand-offs, each tap closed at once\n`);
    fig.handoff_loop = await b.handoffLoop(opts.loop);
  }

  // the first hand-off on a down network brings it up
  const onDemand = [];
  for (let i = 0; i < opts.onDemand; i++) {
    await b.cli(['down', NETWORK]);
    onDemand.push(...(await b.handoffVnet(1)));
  }
  if (onDemand.length) fig.handoff.vnet_on_demand = summary(onDemand);
}
