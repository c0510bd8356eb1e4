/**
 * vnet's CLI and daemon on one network: `vnet up` / `vnet down` (CLI wall time and the daemon's own
 * time from its log), the CLI's start-up against a bare `node -e 0` (both through `ip netns exec`),
 * the socket API's round trip for up/down, and idle cost: RSS, threads, wake-ups per thread name of
 * vnetd, and of its dnsmasq and nft monitor.
 */
import { childrenOf, median, procStatus, r1, rssMb, sleep, switchesByName, threadSwitches, wakeups, now } from '../lib/proc.mjs';
import { NETWORK } from '../lib/vnet.mjs';

export async function upDownFigures(b, opts, fig) {
  process.stderr.write(`bench: vnet up/down x${opts.updown}\n`);
  await b.cli(['down', NETWORK]);
  const upBefore = b.loggedMs('network up').length;
  const downBefore = b.loggedMs('network down').length;
  const w = { up: [], down: [], nsExec: [], node: [], status: [], apiUp: [], apiDown: [] };
  for (let i = 0; i < opts.updown; i++) {
    w.up.push((await b.cli(['up', NETWORK])).ms);
    w.status.push((await b.cli(['status'])).ms);
    w.down.push((await b.cli(['down', NETWORK])).ms);
    // what `ip netns exec` alone, and Node alone, add to each CLI wall time
    w.nsExec.push((await b.inNs('true', [])).ms);
    w.node.push((await b.inNs(process.execPath, ['-e', '0'])).ms);
  }
  const upDaemon = b.loggedMs('network up').slice(upBefore);
  const downDaemon = b.loggedMs('network down').slice(downBefore);
  // the same operations from a client already connected (no process start): the socket API
  for (let i = 0; i < opts.updown; i++) {
    let t0 = now();
    await b.call('up', { name: NETWORK });
    w.apiUp.push(now() - t0);
    t0 = now();
    await b.call('down', { name: NETWORK });
    w.apiDown.push(now() - t0);
  }
  const m = (xs) => r1(median(xs));
  fig.updown = {
    n: opts.updown,
    up_cli_ms: m(w.up),
    up_daemon_ms: m(upDaemon),
    up_api_ms: m(w.apiUp),
    down_cli_ms: m(w.down),
    down_daemon_ms: m(downDaemon),
    down_api_ms: m(w.apiDown),
    netns_exec_ms: m(w.nsExec),
  };
  fig.cli = {
    n: opts.updown,
    node_e0_ms: m(w.node),
    status_ms: m(w.status),
    up_ms: m(w.up),
    status_overhead_ms: r1(median(w.status) - median(w.node)),
    up_overhead_ms: r1(median(w.up) - median(w.node) - median(upDaemon)),
  };
}

/**
 * After `settleS` (V8 runs a few memory-reducing GCs in the seconds after start-up or activity),
 * `seconds` of idle: for vnetd, RSS, threads, wake-ups (context switches of all threads) and the
 * same per thread name; for its dnsmasq (summed) and its nft monitor, RSS and wake-ups.
 */
export async function idleFigures(pid, seconds, settleS) {
  await sleep(settleS * 1000);
  const dnsmasq = childrenOf(pid, 'dnsmasq');
  const nft = childrenOf(pid, 'nft');
  const before = { vnetd: threadSwitches(pid), dnsmasq: dnsmasq.map(wakeups), nft: nft.map(wakeups) };
  await sleep(seconds * 1000);
  const after = threadSwitches(pid);
  const st = procStatus(pid);
  const sum = (xs) => xs.reduce((a, x) => a + x, 0);
  const byThread = switchesByName(before.vnetd, after);
  const out = {
    rss_mb: +(st.rssKb / 1024).toFixed(1),
    threads: st.threads,
    wakeups: sum(Object.values(byThread)),
    // the main thread is named after the process (vnetd); the others are V8's and libuv's
    wakeups_by_thread: byThread,
    main_thread_wakeups: byThread.vnetd ?? 0,
  };
  if (dnsmasq.length) {
    out.dnsmasq = dnsmasq.length;
    out.dnsmasq_rss_mb = +sum(dnsmasq.map(rssMb)).toFixed(1);
    out.dnsmasq_wakeups = sum(dnsmasq.map(wakeups)) - sum(before.dnsmasq);
  }
  if (nft.length) {
    out.nft_monitor_rss_mb = +sum(nft.map(rssMb)).toFixed(1);
    out.nft_monitor_wakeups = sum(nft.map(wakeups)) - sum(before.nft);
  }
  return out;
}

export async function idleNoNetwork(b, opts, fig) {
  process.stderr.write(`bench: vnetd idle, no network (${opts.settleS} s to settle, ${opts.idleS} s measured)\n`);
  fig.idle_no_network = await idleFigures(b.vnetdPid, opts.idleS, opts.settleS);
}

export async function idleOneNetwork(b, opts, fig) {
  process.stderr.write(`bench: vnetd idle, ${NETWORK} up (${opts.settleS} s to settle, ${opts.idleS} s measured)\n`);
  await b.cli(['up', NETWORK]);
  fig.idle_one_network = await idleFigures(b.vnetdPid, opts.idleS, opts.settleS);
  await b.cli(['down', NETWORK]);
}
