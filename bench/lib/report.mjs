/**
 * The bench's output: a markdown table of every figure against its peer and target, the JSON of
 * everything, and the charts, under bench/results/ (RESULTS-STAMP.{md,json} and the latest charts).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { barChart, lineChart, writeChart } from './svg.mjs';
import { ROOT } from './vnet.mjs';

export const RESULTS = path.join(ROOT, 'bench/results');

const f = (x, unit = '') => (x === null || x === undefined ? '–' : `${x}${unit}`);
const ratio = (a, b) => (typeof a === 'number' && typeof b === 'number' && b > 0 ? +(a / b).toFixed(2) : null);
const verdict = (v, target, le = true) => (v === null ? '–' : (le ? v <= target : v >= target) ? 'met' : '**missed**');

/** Rows: [what, vnet, libvirt, ratio or figure, target, met]. */
function rows(fig) {
  const L = fig.libvirt ?? {};
  const out = [];
  const cmp = (what, a, b, target, unit = ' ms') => {
    const r = ratio(a, b);
    out.push([what, f(a, unit), f(b, unit), f(r, '×'), target === undefined ? '' : `≤ ${target}×`, target === undefined ? '' : verdict(r, target)]);
  };
  const own = (what, v, target, unit, peer) => out.push([what, f(v, unit), peer ?? '', '', target === undefined ? '' : `≤ ${target}${unit}`, target === undefined ? '' : verdict(v, target)]);
  if (fig.cold) {
    cmp('1. cold start to first tap', fig.cold.total_ms, L.cold?.total_ms, 0.8);
    out.push(['   vnet: Node + modules until vnetd logs / start() / network up / tap', `${f(fig.cold.startup_ms)} / ${f(fig.cold.reconcile_ms)} / ${f(fig.cold.network_up_ms)} / ${f(fig.cold.rest_ms)} ms`, `libvirtd ${f(L.cold?.daemon_start_ms)} / net-start ${f(L.cold?.net_start_ms)} / helper ${f(L.cold?.handoff_ms)} ms`, '', '', '']);
  }
  if (fig.cli) {
    own('2. `node -e 0` (same run, through ip netns exec)', fig.cli.node_e0_ms, undefined, ' ms');
    own('2. `vnet status`', fig.cli.status_ms, undefined, ' ms', `virsh net-list ${f(L.updown?.net_list_cli_ms, ' ms')}`);
    own('2. `vnet status` over `node -e 0`', fig.cli.status_overhead_ms, 15, ' ms');
    own('2. `vnet up` over `node -e 0` + daemon time', fig.cli.up_overhead_ms, 15, ' ms');
    cmp('2. `vnet up` vs `virsh net-start`, end to end', fig.updown?.up_cli_ms, L.updown?.net_start_cli_ms, 1.0);
    cmp('2. `vnet down` vs `virsh net-destroy`, end to end', fig.updown?.down_cli_ms, L.updown?.net_destroy_cli_ms, 0.3);
  }
  if (fig.updown) {
    cmp('3. daemon-side up (connected client)', fig.updown.up_api_ms, L.updown?.net_start_api_ms, 0.3);
    cmp('3. daemon-side down (connected client)', fig.updown.down_api_ms, L.updown?.net_destroy_api_ms);
    own('3. vnetd up / down by its log', `${f(fig.updown.up_daemon_ms)} / ${f(fig.updown.down_daemon_ms)}`, undefined, ' ms');
  }
  if (fig.handoff) {
    cmp('4. hand-off p50 vs qemu-bridge-helper', fig.handoff.vnet.p50_ms, fig.handoff.stock.p50_ms, 0.8);
    cmp('4. floor (static helper making the tap) p50', fig.handoff.floor.p50_ms, fig.handoff.stock.p50_ms);
  }
  for (const [n, s] of Object.entries(fig.networks ?? {})) {
    const l = L.networks?.[n];
    own(`5. ${n} NAT networks up, last/first`, s.up_growth, 1.2, '×', l ? `libvirt ${f(l.up_growth, '×')}${l.failures ? `, ${l.failures.count} failed from #${l.failures.first.at}` : ''}` : '');
    own(`5. ${n} networks down, with most up/fewest`, s.down_growth, 1.2, '×', l ? `libvirt ${f(l.down_growth, '×')}` : '');
    cmp(`5. ${n} networks: total up`, s.up_total_s, l?.up_total_s, undefined, ' s');
    cmp(`5. ${n} networks: total down`, s.down_total_s, l?.down_total_s, undefined, ' s');
    cmp(`5. ${n} networks: ruleset lines per network`, s.ruleset_lines_per_network, l?.ruleset_lines_per_network, undefined, '');
    for (const [k, c] of Object.entries(s.at ?? {})) {
      const lc = l?.at?.[k];
      cmp(`5. at ${k} networks: total up so far`, c.up_total_s, lc?.up_total_s, undefined, ' s');
      cmp(`5. at ${k} networks: ruleset lines per network`, c.ruleset_lines_per_network, lc?.ruleset_lines_per_network, undefined, '');
      cmp(`5. at ${k} networks: daemon RSS`, c.rss_mb, lc?.rss_mb, undefined, ' MiB');
    }
    if (s.failed) out.push([`5. ${n} networks: FAILED at #${s.failed.at}`, s.failed.error.slice(0, 120), '', '', '', '**missed**']);
  }
  for (const [n, s] of Object.entries(L.networks ?? {})) {
    if (fig.networks?.[n]) continue;
    out.push([`5. ${n} NAT networks up (libvirt only), last/first`, '', `${f(s.up_growth, '×')} (${s.started} started${s.failures ? `; from #${s.failures.first.at}: ${s.failures.first.error.slice(0, 80)}` : ''})`, '', '', '']);
    out.push([`5. ${n} networks (libvirt only): total up / down, ruleset lines per network`, '', `${f(s.up_total_s, ' s')} / ${f(s.down_total_s, ' s')}, ${f(s.ruleset_lines_per_network)}`, '', '', '']);
  }
  if (fig.taps) {
    own(`5. ${fig.taps.n} live taps on one network, last 50/first 50`, fig.taps.growth, 1.2, '×', L.taps ? `stock ${f(L.taps.growth, '×')}` : '');
    cmp(`5. ${fig.taps.n} taps: total`, fig.taps.total_s, L.taps?.total_s, undefined, ' s');
  }
  if (fig.parallel) {
    own(`5. ${fig.parallel.n} hand-offs at once from ${fig.parallel.users} users, last 8/first 8`, fig.parallel.growth, 1.2, '×', L.parallel ? `stock ${f(L.parallel.growth, '×')}` : '');
    cmp(`5. ${fig.parallel.n} at once: wall`, fig.parallel.wall_s, L.parallel?.wall_s, undefined, ' s');
    cmp(`5. ${fig.parallel.n} at once: p50`, fig.parallel.p50_ms, L.parallel?.p50_ms);
  }
  const i1 = fig.idle_one_network;
  if (i1) {
    const v8 = Object.entries(i1.wakeups_by_thread ?? {}).filter(([k]) => k !== 'vnetd').map(([k, v]) => `${k} ${v}`).join(', ');
    own('6. idle 10 s, `default` up: vnetd main thread wake-ups', i1.main_thread_wakeups, 0, '', `libvirtd (all threads) ${f(L.idle_one_network?.wakeups)}`);
    own('6. idle: vnetd other threads (V8, libuv)', v8 || '0', undefined, '');
    own('6. idle: dnsmasq / nft monitor wake-ups', `${f(i1.dnsmasq_wakeups)} / ${f(i1.nft_monitor_wakeups)}`, undefined, '', `libvirt's dnsmasq ${f(L.idle_one_network?.dnsmasq_wakeups)}`);
  }
  const sN = Object.values(fig.networks ?? {}).at(-1);
  if (sN?.idle) own(`6. idle with ${sN.n} networks up: vnetd main thread / all threads / dnsmasq`, `${sN.idle.main_thread_wakeups} / ${sN.idle.wakeups} / ${f(sN.idle.dnsmasq_wakeups)}`, undefined, '');
  if (fig.leftovers) own(`6. processes left after idle exit (socket activation, nothing up)`, fig.leftovers.processes_left, 0, '', L.leftovers ? `libvirtd --timeout: ${L.leftovers.processes_left}` : '');
  if (fig.idle_no_network) own('7. vnetd RSS idle, no network', fig.idle_no_network.rss_mb, 56, ' MiB', `libvirtd ${f(L.idle_no_network_rss_mb, ' MiB')}`);
  if (sN) own(`7. vnetd RSS with ${sN.n} networks up`, sN.rss_mb, 80, ' MiB', L.networks?.[sN.n] ? `libvirtd ${f(L.networks[sN.n].rss_mb, ' MiB')} (+ its dnsmasq ${f(L.networks[sN.n].dnsmasq_rss_mb, ' MiB')})` : '');
  if (fig.churn) own(`7. vnetd RSS growth over ${fig.churn.n} hand-offs (${fig.churn.rss_mb_before} → ${fig.churn.rss_mb_after} MiB)`, fig.churn.growth_pct, 5, ' %');
  return out;
}

export function markdown(fig) {
  const m = fig.machine;
  const head = [
    `### ${m.date} — ${m.cpus} cores (${m.cpu_model}), load ${m.load_before.join(' ')} at start, ${m.load_after.join(' ')} at end`,
    '',
    `vnet ${m.vnet} (Node ${m.node}) against libvirt ${m.libvirt ?? '–'} + qemu-bridge-helper (QEMU ${m.qemu}), kernel ${m.kernel}, nft ${m.nft}, dnsmasq ${m.dnsmasq}; every ratio measured in the same run.`,
    '',
    '| what | vnet | libvirt | ratio | target | |',
    '| --- | --- | --- | --- | --- | --- |',
  ];
  const line = (r) => `| ${r.map((c) => String(c).replace(/\|/g, '\\|')).join(' | ')} |`;
  const loops = movedRows(fig);
  const tail = loops.length ? ['', 'Long loops moved out of `make test` (vnet alone):', '', '| loop | result |', '| --- | --- |', ...loops.map(line)] : [];
  return [...head, ...rows(fig).map(line), ...tail].join('\n') + '\n';
}

/** The long loops `make test` runs short: [what, figures]. */
function movedRows(fig) {
  const s = (x) => `min ${x.min_ms} / p50 ${x.p50_ms} / p90 ${x.p90_ms} / max ${x.max_ms} ms`;
  const out = [];
  const r = fig.restart_loop;
  if (r) out.push([`${r.n} vnetd restarts with \`default\` up (SIGTERM and SIGKILL in turn), signal → answering`, `${s(r.restart)}; then ${r.rules} rules (${r.rules_after_clean_up ?? 'no count'} after a clean up), ${r.dnsmasq} dnsmasq, bridges ${r.bridges.join(' ')}: ${r.consistent ? 'consistent' : '**NOT consistent**'}`]);
  const h = fig.handoff_fd_loop;
  if (h) out.push([`${h.n} hand-offs back to back (fd leak check)`, `${h.ok} ok, ${h.failed} failed in ${h.seconds} s (p50 ${h.p50_ms} ms); vnetd fds ${h.vnetd_fds_before} → ${h.vnetd_fds_after}, taps left ${h.taps_left}`]);
  const l = fig.load_handoffs;
  if (l) out.push([`${l.n} concurrent hand-offs (10 uids, 30 in flight)`, `${l.seconds} s, ${l.ok} ok, ${l.refused} refused, ${l.driver_errors} driver errors; each ${s(l.per_handoff)}`]);
  if (fig.nft_apply) out.push([`nft apply of one network's table ×${fig.nft_apply.n}`, s(fig.nft_apply)]);
  const d = fig.dnsmasq_start;
  if (d) out.push([`dnsmasq starts ×${d.spawn_to_serving.n}`, `spawn → serving ${s(d.spawn_to_serving)}; whole start() ${s(d.whole_start)}; RSS ${d.serving_rss_mb} MB`]);
  return out;
}

/**
 * The README shows the latest table and charts: the text between its two markers is replaced
 * (a README without them is left as it is).
 */
export function readmeSection(md) {
  const file = path.join(ROOT, 'README.md');
  const [start, end] = ['<!-- bench:latest -->', '<!-- /bench:latest -->'];
  const text = readFileSync(file, 'utf8');
  const a = text.indexOf(start);
  const b = text.indexOf(end);
  if (a < 0 || b < a) return;
  const charts = ['cold', 'networks', 'taps'].filter((c) => existsSync(path.join(RESULTS, `${c}.png`))).map((c) => `![${c}](bench/results/${c}.png)`);
  const body = `${start}\n${md.replace(/^### /, '#### ')}\n${charts.join('\n')}\n${end}`;
  writeFileSync(file, text.slice(0, a) + body + text.slice(b + end.length));
}

export async function writeResults(fig) {
  mkdirSync(RESULTS, { recursive: true });
  const stamp = fig.machine.date.replace(/[:]/g, '').replace(' ', 'T');
  const md = markdown(fig);
  writeFileSync(path.join(RESULTS, `${stamp}.json`), JSON.stringify({ bench: 'vnet', ...fig }, null, 1) + '\n');
  writeFileSync(path.join(RESULTS, `${stamp}.md`), md);
  writeFileSync(path.join(RESULTS, 'latest.md'), md);
  readmeSection(md);
  const L = fig.libvirt ?? {};
  const series = (label, ms) => ({ label, points: (ms ?? []).map((v, i) => [i + 1, v]) });
  const nets = Object.entries(fig.networks ?? {}).at(-1);
  if (nets) {
    const lv = Object.values(L.networks ?? {}).at(-1);
    await writeChart(path.join(RESULTS, 'networks'), lineChart({
      title: 'Bringing up the Nth NAT network (others stay up)',
      xLabel: 'networks up',
      yLabel: 'ms per operation (connected client)',
      series: [series('vnet up', nets[1].up_ms), series('libvirt net-start', lv?.up_ms), series('vnet down', [...(nets[1].down_ms ?? [])].reverse()), series('libvirt net-destroy', [...(lv?.down_ms ?? [])].reverse())],
    }));
  }
  if (fig.taps) {
    await writeChart(path.join(RESULTS, 'taps'), lineChart({
      title: 'Hand-off of the Nth live tap on one network',
      xLabel: 'live taps',
      yLabel: 'ms per hand-off',
      series: [series('vnet-bridge-helper (16 users)', fig.taps.ms), series('qemu-bridge-helper (root)', L.taps?.ms)],
    }));
  }
  if (fig.cold && L.cold) {
    await writeChart(path.join(RESULTS, 'cold'), barChart({
      title: 'Cold start to first tap (median)',
      yLabel: 'ms',
      bars: [
        { label: 'vnet', parts: [{ label: 'vnetd start-up (Node, modules)', value: fig.cold.startup_ms }, { label: 'vnetd start() / reconcile', value: fig.cold.reconcile_ms }, { label: 'network up', value: fig.cold.network_up_ms }, { label: 'tap + helper', value: fig.cold.rest_ms }] },
        { label: 'libvirt', parts: [{ label: 'libvirtd start', value: L.cold.daemon_start_ms }, { label: 'virsh net-start', value: L.cold.net_start_ms }, { label: 'qemu-bridge-helper', value: L.cold.handoff_ms }] },
      ],
    }));
  }
  return { md, stamp };
}
