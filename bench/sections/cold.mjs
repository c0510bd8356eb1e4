/**
 * Cold start to the first tap, what a laptop user feels when starting the first VM.
 * vnet: vnetd not running, socket-activated by systemd-socket-activate (as vnetd.socket does), the
 * network down: the hand-off (build/handoff through build/vnet-bridge-helper) starts vnetd, which
 * brings the network up on demand and hands the tap out. Split by vnetd's log: start-up until its
 * first line (Node, modules, lock), start() (reconcile), network up, the rest (tap and helper).
 * libvirt: libvirtd not running; start it (until its socket exists), `virsh net-start` of the same
 * network, then the stock qemu-bridge-helper's hand-off. One untimed round each first (page cache,
 * libvirt's QEMU capabilities cache, as any host that ran libvirt before has).
 * Also: with socket activation and nothing up, how many vnet processes are left after the idle exit
 * (VNET_IDLE_EXIT, 120 s in the unit, shortened here), and libvirtd's with its --timeout.
 */
import { median, now, r1, sleep, until, alive, netnsPids, commOf } from '../lib/proc.mjs';
import { NETWORK, VNET_HELPER } from '../lib/vnet.mjs';

export async function coldVnet(b, opts) {
  const rounds = [];
  for (let i = 0; i <= opts.cold; i++) {
    await b.activate();
    const mark = b.logged('vnetd ready').length;
    const h = await b.handoff(VNET_HELPER, 1);
    const t0 = h.t0_epoch_ms; // just before the hand-off's socketpair(), on the clock of vnetd's log
    const ready = b.logged('vnetd ready')[mark];
    const up = b.logged('network up').at(-1);
    const total = h.samples_ms[0];
    const startup = ready ? ready.time - ready.ms - t0 : null;
    if (i > 0) rounds.push({ total_ms: total, startup_ms: startup, reconcile_ms: ready?.ms ?? null, network_up_ms: up?.ms ?? null, rest_ms: ready && up ? total - startup - ready.ms - up.ms : null });
    await b.call('down', { name: NETWORK });
    await b.stopVnetd();
  }
  const m = (k) => r1(median(rounds.map((r) => r[k]).filter((x) => x !== null)));
  return { n: rounds.length, rounds, total_ms: m('total_ms'), startup_ms: m('startup_ms'), reconcile_ms: m('reconcile_ms'), network_up_ms: m('network_up_ms'), rest_ms: m('rest_ms') };
}

export async function coldLibvirt(lv, opts) {
  const rounds = [];
  for (let i = 0; i <= opts.cold; i++) {
    const t0 = now();
    const daemon = await lv.startDaemon();
    const start = await lv.virsh(['net-start', NETWORK]);
    const h = await lv.handoff(1);
    const total = now() - t0;
    if (i > 0) rounds.push({ total_ms: total, daemon_start_ms: daemon, net_start_ms: start.ms, handoff_ms: h.samples_ms[0] });
    await lv.virsh(['net-destroy', NETWORK]);
    await lv.stopDaemon();
  }
  const m = (k) => r1(median(rounds.map((r) => r[k])));
  return { n: rounds.length, rounds, total_ms: m('total_ms'), daemon_start_ms: m('daemon_start_ms'), net_start_ms: m('net_start_ms'), handoff_ms: m('handoff_ms') };
}

/** Socket activation, one client, nothing up: vnet processes left once the idle exit passed. */
export async function activationLeftovers(b, idleExitS) {
  const p = await b.activate({ VNET_IDLE_EXIT: String(idleExitS) });
  await b.call('list');
  const t0 = now();
  await until('vnetd’s idle exit', () => !alive(p.pid), (idleExitS + 30) * 1000, 50);
  const exitMs = now() - t0;
  await sleep(500);
  const left = (await netnsPids(b.ns)).map(commOf).filter((c) => c && c !== 'sleep');
  b.vnetdPid = undefined;
  return { idle_exit_s: idleExitS, exited_after_ms: r1(exitMs), processes_left: left.length, left };
}

export async function libvirtLeftovers(lv, timeoutS) {
  await lv.startDaemon(['--timeout', String(timeoutS)]);
  await lv.virsh(['net-list', '--all']);
  const pid = lv.pid;
  const t0 = now();
  await until('libvirtd’s --timeout exit', () => !alive(pid), (timeoutS + 60) * 1000, 50);
  const exitMs = now() - t0;
  const left = (await netnsPids(lv.ns)).map(commOf).filter((c) => c && c !== 'sleep');
  lv.daemon = undefined;
  return { timeout_s: timeoutS, exited_after_ms: r1(exitMs), processes_left: left.length, left };
}
