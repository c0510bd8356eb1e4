/**
 * br_netfilter: with net.bridge.bridge-nf-call-iptables = 1 (the default once the module is
 * loaded, which Docker and Kubernetes do), frames bridged between two guests of one vnet bridge
 * also pass iptables' FORWARD chains, so another firewall's forward drop (foreign-drops.ts) cuts
 * guests of one network off from each other too, isolated networks included. Harmless alone.
 */
import { ProcSysctl } from '../sys/sysctl.js';
import { couldNotRead, failure, isUnreadable, note, passed, reasonOf, type Finding, type Unreadable } from './finding.js';
import type { ForeignDropFacts } from './foreign-drops.js';
import type { Scope } from './scope.js';

export interface BrNetfilterFacts {
  /** net.bridge.bridge-nf-call-iptables; undefined: br_netfilter is not loaded */
  iptables: string | undefined | Unreadable;
  ip6tables: string | undefined | Unreadable;
}

const CHECK = 'br-netfilter';

/** Does another firewall drop forwarded traffic (as foreign-drops.ts found it)? */
export function foreignDropFound(f: ForeignDropFacts, scope: Scope): boolean {
  const nft = !isUnreadable(f.nft) && f.nft.drops.some((d) => !(d.owner === 'docker' && scope.settings.dockerCompat && !isUnreadable(f.nft) && f.nft.dockerUser));
  return nft || f.legacy.some((l) => !isUnreadable(l) && (l.forwardPolicy === 'DROP' || l.forwardDrops.length > 0));
}

export function judgeBrNetfilter(f: BrNetfilterFacts, dropped: boolean, scope: Scope): Finding[] {
  if (isUnreadable(f.iptables)) return [couldNotRead(CHECK, 'net.bridge.bridge-nf-call-iptables', f.iptables.unreadable)];
  if (f.iptables === undefined) return [passed(CHECK)];
  const on = [f.iptables === '1' ? 'bridge-nf-call-iptables' : '', f.ip6tables === '1' ? 'bridge-nf-call-ip6tables' : ''].filter(Boolean);
  if (on.length === 0) return [passed(CHECK)];
  const sysctls = on.map((k) => `net.bridge.${k}`);
  if (dropped && scope.networks.length > 0)
    return [
      failure(
        CHECK,
        `br_netfilter sends bridged frames through iptables (${sysctls.map((s) => `${s} = 1`).join(', ')}) and another firewall drops forwarded traffic: guests of one bridge cannot reach each other, isolated networks included`,
        `fix the forward drop (foreign-drop above); or, if nothing on this host needs bridged frames filtered: ${sysctls.map((s) => `sudo sysctl -w ${s}=0`).join(' && ')}   # persist it in /etc/sysctl.d/ (Docker and Kubernetes turn it on again)`,
      ),
    ];
  return [note(CHECK, `br_netfilter sends bridged frames through iptables (${sysctls.map((s) => `${s} = 1`).join(', ')}); harmless while no other firewall drops forwarded traffic`)];
}

async function read(sysctl: ProcSysctl, key: string): Promise<string | undefined | Unreadable> {
  try {
    return await sysctl.read(key);
  } catch (err) {
    return { unreadable: reasonOf(err) };
  }
}

export async function gatherBrNetfilter(root = '/proc/sys'): Promise<BrNetfilterFacts> {
  const sysctl = new ProcSysctl(root);
  return { iptables: await read(sysctl, 'net/bridge/bridge-nf-call-iptables'), ip6tables: await read(sysctl, 'net/bridge/bridge-nf-call-ip6tables') };
}
