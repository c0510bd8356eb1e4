/** `vnet doctor`'s text: one line per finding, the fix under it, and a summary line last. */
import type { Finding } from './finding.js';

/** What an `ok` line says was found fine. */
const FINE: Record<string, string> = {
  vnetd: 'vnetd answers, and no network failed',
  programs: 'nft and dnsmasq are installed',
  forwarding: 'forwarding is on where networks need it',
  'foreign-drop': 'no other firewall drops forwarded traffic',
  'br-netfilter': 'bridged frames are not filtered by iptables',
  'dns-port': 'no other DNS server holds port 53 on the wildcard address',
  apparmor: "AppArmor does not stop vnet's dnsmasq",
  selinux: "SELinux does not stop vnet's dnsmasq",
  tun: '/dev/net/tun is there',
  'bridge-acl': "QEMU's bridge.conf lets vnet's bridges through",
  'libvirt-helper': "users' libvirt bridge_helper is vnet's (or unset)",
  firewalld: 'firewalld is not running, or has vnet\'s zones',
  subnets: "no network's subnet or bridge clashes with the host",
};

export function formatFindings(findings: readonly Finding[]): string {
  const width = Math.max(...findings.map((f) => f.check.length), 5);
  const lines: string[] = [];
  for (const f of findings) {
    const head = `${f.severity.padEnd(7)}  ${f.check.padEnd(width)}`;
    lines.push(`${head}  ${f.problem ?? FINE[f.check] ?? ''}`.trimEnd());
    if (f.fix !== null) lines.push(`${' '.repeat(9 + width + 2)}fix: ${f.fix}`);
  }
  const count = (s: Finding['severity']) => findings.filter((f) => f.severity === s).length;
  const [errors, warnings, notes] = [count('error'), count('warning'), count('info')];
  const wrong = errors + warnings;
  const parts = [errors ? `${errors} error${errors > 1 ? 's' : ''}` : '', warnings ? `${warnings} warning${warnings > 1 ? 's' : ''}` : '', notes ? `${notes} note${notes > 1 ? 's' : ''}` : ''].filter(Boolean);
  lines.push('', wrong === 0 ? `nothing wrong${notes ? ` (${parts.join(', ')})` : ''}` : `something is wrong: ${parts.join(', ')}`);
  return lines.join('\n');
}
