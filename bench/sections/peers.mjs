/**
 * libvirt's side of every comparison, in its own namespaces (bench/lib/libvirt.mjs), same run:
 * cold start to first tap, `virsh net-start`/`net-destroy` end to end and from a connected client,
 * idle cost and memory of libvirtd with the network up, the idle exit with --timeout, scale.
 */
import { median, r1, rssMb, sleep, switchesByName, threadSwitches, procStatus, wakeups } from '../lib/proc.mjs';
import { Libvirt, VirshSession } from '../lib/libvirt.mjs';
import { NETWORK } from '../lib/vnet.mjs';
import { coldLibvirt, libvirtLeftovers } from './cold.mjs';
import { libvirtNetworks, stockParallel, stockTaps } from './scale.mjs';

export async function libvirtFigures(b, opts, fig) {
  const lv = new Libvirt(b.dir);
  await lv.setup();
  fig.machine.libvirt = lv.version;
  // first start: libvirt probes QEMU's capabilities and caches them (as on any host that ran it before)
  await lv.startDaemon();
  await lv.define(NETWORK, 'virbr0', '192.168.122.0');
  await lv.virsh(['net-start', NETWORK]);
  await lv.virsh(['net-destroy', NETWORK]);
  await lv.stopDaemon();
  const out = {};

  if (opts.cold) {
    process.stderr.write(`bench: libvirt cold start to first tap x${opts.cold}\n`);
    out.cold = await coldLibvirt(lv, opts);
  }

  await lv.startDaemon();
  out.idle_no_network_rss_mb = rssMb(lv.pid);
  process.stderr.write(`bench: virsh net-start/net-destroy x${opts.updown}\n`);
  const w = { start: [], destroy: [], list: [], sStart: [], sDestroy: [] };
  for (let i = 0; i < opts.updown; i++) {
    w.start.push((await lv.virsh(['net-start', NETWORK])).ms);
    w.list.push((await lv.virsh(['net-list'])).ms);
    w.destroy.push((await lv.virsh(['net-destroy', NETWORK])).ms);
  }
  const v = new VirshSession(lv);
  for (let i = 0; i < opts.updown; i++) {
    w.sStart.push((await v.cmd(`net-start ${NETWORK}`)).ms);
    w.sDestroy.push((await v.cmd(`net-destroy ${NETWORK}`)).ms);
  }
  await v.close();
  const m = (xs) => r1(median(xs));
  out.updown = { n: opts.updown, net_start_cli_ms: m(w.start), net_destroy_cli_ms: m(w.destroy), net_list_cli_ms: m(w.list), net_start_api_ms: m(w.sStart), net_destroy_api_ms: m(w.sDestroy) };

  if (opts.idleS) {
    process.stderr.write(`bench: libvirtd idle, ${NETWORK} up\n`);
    await lv.virsh(['net-start', NETWORK]);
    await sleep(opts.settleS * 1000);
    const dns = await lv.dnsmasqPids();
    const before = { d: threadSwitches(lv.pid), dns: dns.map(wakeups) };
    await sleep(opts.idleS * 1000);
    const by = switchesByName(before.d, threadSwitches(lv.pid));
    const st = procStatus(lv.pid);
    const sum = (xs) => xs.reduce((a, x) => a + x, 0);
    out.idle_one_network = {
      rss_mb: +(st.rssKb / 1024).toFixed(1),
      threads: st.threads,
      wakeups: sum(Object.values(by)),
      wakeups_by_thread: by,
      dnsmasq: dns.length,
      dnsmasq_rss_mb: r1(sum(dns.map(rssMb))),
      dnsmasq_wakeups: sum(dns.map(wakeups)) - sum(before.dns),
    };
    await lv.virsh(['net-destroy', NETWORK]);
  }

  if (opts.taps) {
    process.stderr.write(`bench: ${opts.taps} live taps, stock helper\n`);
    out.taps = await stockTaps(lv, opts.taps);
  }
  if (opts.parallelUsers) {
    process.stderr.write(`bench: ${opts.parallelUsers * opts.parallelPerUser} hand-offs at once, stock helper\n`);
    out.parallel = await stockParallel(lv, opts.parallelUsers, opts.parallelPerUser);
  }
  out.networks = {};
  for (const n of opts.libvirtNetworks) {
    process.stderr.write(`bench: libvirt, ${n} networks up one after the other\n`);
    out.networks[n] = await libvirtNetworks(lv, n);
  }
  await lv.stopDaemon();

  if (opts.idleExitS) {
    process.stderr.write('bench: libvirtd --timeout exit\n');
    out.leftovers = await libvirtLeftovers(lv, opts.idleExitS);
  }
  fig.libvirt = out;
}
