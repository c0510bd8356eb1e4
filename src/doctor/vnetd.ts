/**
 * vnetd itself: can doctor reach it (its socket in VNET_RUNTIME_DIR), and does any network fail
 * (a dnsmasq that kept dying until its supervisor gave up: state "failed", reason "dnsmasq keeps
 * failing: ..."; or any other failure vnetd recorded). Without vnetd every other check still runs.
 */
import { failure, passed, type Finding } from './finding.js';
import type { Scope } from './scope.js';

const CHECK = 'vnetd';

export function judgeVnetd(scope: Scope): Finding[] {
  const st = scope.status;
  if (!(st instanceof Map))
    return [
      failure(
        CHECK,
        `cannot reach vnetd: ${st.unreachable}. No network comes up on demand and no VM gets a tap; the other checks ran without it`,
        `sudo systemctl enable --now vnetd.socket   # or, without systemd: sudo vnet up NETWORK (starts vnetd, log in ${scope.paths.runtimeDir}/vnetd.log)`,
      ),
    ];
  const out: Finding[] = [];
  for (const n of scope.networks) {
    const s = st.get(n.name);
    if (s?.state !== 'failed') continue;
    const dnsmasq = /dnsmasq/.test(s.reason ?? '');
    out.push(
      failure(
        dnsmasq ? 'dnsmasq' : CHECK,
        `network ${n.name} failed: ${s.reason ?? 'no reason recorded'}${dnsmasq ? ' (its dnsmasq kept dying, and vnetd stopped restarting it)' : ''}`,
        `${dnsmasq ? 'see the dns-port, apparmor and selinux checks, and dnsmasq\'s own words in vnetd\'s log (journalctl -u vnetd, or vnetd.log); then ' : ''}sudo vnet down ${n.name} --force && sudo vnet up ${n.name}`,
      ),
    );
  }
  return out.length ? out : [passed(CHECK)];
}
