// Times the kernel-facing steps of vnetd in the current namespace.
// Usage: node netlink-bench.mjs [N]; prints JSON {bridgeUp: {p50,p90}, tap: {p50,p90}} in ms.
import { Rtnl } from '../../../dist/netlink/rtnl.js';
import { attachTap, openTap } from '../../../dist/netlink/tun.js';
import { closeFd } from '../../../dist/sys/libc.js';

const n = Number(process.argv[2] ?? 50);
const rtnl = new Rtnl();
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))];
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;

const bridgeUp = [];
for (let i = 0; i < n; i++) {
  const t0 = process.hrtime.bigint();
  const br = await rtnl.createBridge('vbench0');
  await rtnl.addAddress(br.index, '10.77.0.1', 24);
  await rtnl.setUp(br.index, true);
  bridgeUp.push(ms(t0));
  await rtnl.deleteLink(br.index);
}

const bridge = await rtnl.createBridge('vbench1', { mtu: 1400 });
await rtnl.setUp(bridge.index, true);
const tap = [];
for (let i = 0; i < n; i++) {
  const t0 = process.hrtime.bigint();
  const t = openTap({ vnetHdr: true });
  attachTap(t.name, bridge.name);
  tap.push(ms(t0));
  closeFd(t.fd);
}
await rtnl.deleteLink(bridge.index);
rtnl.close();
const sum = (xs) => ({ p50: +pct(xs, 50).toFixed(3), p90: +pct(xs, 90).toFixed(3), n: xs.length });
process.stdout.write(JSON.stringify({ bridgeUp: sum(bridgeUp), tap: sum(tap) }) + '\n');
