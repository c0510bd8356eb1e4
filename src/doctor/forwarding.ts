/**
 * IPv4 and IPv6 forwarding. vnetd turns net.ipv4.ip_forward on while a network that forwards (nat,
 * route, open) is up, and never turns it off; something else turning it off afterwards (a sysctl
 * file applied later, another tool) cuts the guests off. IPv6 forwarding vnet leaves to the admin:
 * a network with IPv6 addresses that forwards needs net.ipv6.conf.all.forwarding = 1.
 */
import { addressesOf, forwards } from '../spec/spec.js';
import { ProcSysctl } from '../sys/sysctl.js';
import { couldNotRead, failure, isUnreadable, note, passed, reasonOf, warning, type Finding, type Unreadable } from './finding.js';
import { list, named, upNetworks, type Scope } from './scope.js';

export interface ForwardingFacts {
  /** net.ipv4.ip_forward: "0", "1"; undefined when there is no such key */
  ipv4: string | undefined | Unreadable;
  /** net.ipv6.conf.all.forwarding (undefined: IPv6 is off in this kernel) */
  ipv6: string | undefined | Unreadable;
}

const CHECK = 'forwarding';

export function judgeForwarding(f: ForwardingFacts, scope: Scope): Finding[] {
  const out: Finding[] = [];
  if (isUnreadable(f.ipv4)) out.push(couldNotRead(CHECK, 'net.ipv4.ip_forward', f.ipv4.unreadable));
  else if (f.ipv4 !== '1') {
    const hit = upNetworks(scope).filter(forwards);
    if (hit.length > 0)
      out.push(
        failure(
          CHECK,
          `IPv4 forwarding is off (net.ipv4.ip_forward = ${f.ipv4 ?? 'missing'}) while ${list(hit.map(named))} ${hit.length > 1 ? 'are' : 'is'} up: guests reach the host but nothing beyond it. vnetd turned it on; something turned it off since`,
          'sudo sysctl -w net.ipv4.ip_forward=1   # and find what turned it off: grep -r ip_forward /etc/sysctl.conf /etc/sysctl.d /usr/lib/sysctl.d',
        ),
      );
    else if (scope.networks.some(forwards)) out.push(note(CHECK, 'IPv4 forwarding is off; vnetd turns it on when a network that forwards comes up'));
  }
  const six = scope.networks.filter((n) => forwards(n) && addressesOf(n, 6).length > 0);
  if (six.length > 0) {
    if (isUnreadable(f.ipv6)) out.push(couldNotRead(CHECK, 'net.ipv6.conf.all.forwarding', f.ipv6.unreadable));
    else if (f.ipv6 !== '1')
      out.push(
        warning(
          CHECK,
          `IPv6 forwarding is ${f.ipv6 === undefined ? 'unavailable (IPv6 is off in this kernel)' : 'off (net.ipv6.conf.all.forwarding = 0)'}: the IPv6 traffic of ${list(six.map(named))} goes no further than the host (vnet leaves IPv6 forwarding to you)`,
          "echo 'net.ipv6.conf.all.forwarding = 1' | sudo tee /etc/sysctl.d/90-vnet-ipv6.conf && sudo sysctl -p /etc/sysctl.d/90-vnet-ipv6.conf   # an uplink configured by router advertisements then needs accept_ra = 2: sudo sysctl -w net.ipv6.conf.UPLINK.accept_ra=2",
        ),
      );
  }
  return out.length ? out : [passed(CHECK)];
}

async function read(sysctl: ProcSysctl, key: string): Promise<string | undefined | Unreadable> {
  try {
    return await sysctl.read(key);
  } catch (err) {
    return { unreadable: reasonOf(err) };
  }
}

export async function gatherForwarding(root = '/proc/sys'): Promise<ForwardingFacts> {
  const sysctl = new ProcSysctl(root);
  return { ipv4: await read(sysctl, 'net/ipv4/ip_forward'), ipv6: await read(sysctl, 'net/ipv6/conf/all/forwarding') };
}
