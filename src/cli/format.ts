/** What the CLI prints: tables of networks and leases, as people read them. */
import type { NetworkStatus, PortForwardInfo } from '../daemon/service.js';
import type { Lease } from '../model.js';

export function table(rows: string[][]): string {
  // a loop, not Math.max(...): a table may have 65,536 rows
  const widths = rows[0]!.map((_, i) => rows.reduce((w, r) => Math.max(w, (r[i] ?? '').length), 0));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

export function formatStatus(list: NetworkStatus[]): string {
  const rows = [['NAME', 'BRIDGE', 'STATE', 'SUBNET', 'LEASES', 'TAPS']];
  for (const n of list) {
    const taps = n.taps.length ? n.taps.map((t) => `${t.name}(uid ${t.uid}, pid ${t.pid})`).join(' ') : '-';
    const state = n.state + (n.state === 'up' && n.pinned ? '' : n.state === 'up' ? ' (on-demand)' : '');
    rows.push([n.name, n.bridge, state, n.subnet, n.leasesProblem ? '?' : String(n.leases), taps]);
  }
  let out = table(rows);
  for (const n of list) if (n.reason) out += `\n${n.name}: ${n.reason}`;
  for (const n of list) if (n.leasesProblem) out += `\n${n.name}: leases unknown: ${n.leasesProblem}`;
  for (const n of list) if (n.conflict) out += `\n${n.name}: subnet conflict: ${n.conflict.subnet} is also in use by interface ${n.conflict.interface} (${n.conflict.detail}); guests may not reach it`;
  for (const n of list) if (n.edited) out += `\n${n.name}: its definition was edited since it came up; \`vnet reload ${n.name}\` applies it`;
  return out;
}

export function formatLeases(leases: Lease[]): string {
  if (!leases.length) return 'no leases';
  // a DHCPv6 client is known by its DUID and IAID (its MAC only when the DUID holds one)
  const v6 = leases.some((l) => l.iaid !== undefined);
  const rows = [['MAC', 'IP', 'HOSTNAME', 'EXPIRES', ...(v6 ? ['IAID', 'DUID'] : [])]];
  for (const l of leases) {
    const row = [l.mac || '-', l.ip, l.hostname || '-', l.expires === 0 ? 'never' : new Date(l.expires * 1000).toISOString()];
    if (v6) row.push(l.iaid ?? '-', l.iaid !== undefined ? l.clientId || '-' : '-');
    rows.push(row);
  }
  return table(rows);
}

export function formatUp(s: NetworkStatus): string {
  return `${s.name}: ${s.state} (bridge ${s.bridge}, ${s.addresses.join(', ')})`;
}

export function formatForwards(list: PortForwardInfo[]): string {
  if (!list.length) return 'no port forwards';
  const rows = [['NETWORK', 'PROTO', 'HOST-PORT', 'GUEST', 'ORIGIN', 'STATE']];
  for (const f of list) {
    const guest = `${f.address && f.address !== f.guest ? `${f.guest} (${f.address})` : f.guest}:${f.guestPort}`;
    rows.push([f.network, f.proto, String(f.hostPort), guest, f.origin, f.active ? 'active' : f.problem ? 'not applied' : 'when up']);
  }
  let out = table(rows);
  for (const f of list) if (f.problem) out += `\n${f.network} ${f.proto} ${f.hostPort}: ${f.problem}`;
  return out;
}
