/**
 * The steps that change the host, as data: what diff() returns and the applier carries out.
 * Each bring-up step carries its undo; teardown steps carry none.
 */
import type { Transaction } from '../firewall/table.js';
import type { DhcpConfig } from '../desired/model.js';
import type { LinkDns } from '../hostdns/resolved-api.js';
import type { ForwardMode } from '../spec/spec.js';

export type Step =
  | { kind: 'create-bridge'; network: string; bridge: string; mac: string; mtu?: number }
  | { kind: 'delete-bridge'; network: string; bridge: string }
  /** `bridge`: the network's bridge, or a tap on it (a tap follows the bridge's MTU) */
  | { kind: 'set-link'; network: string; bridge: string; up?: boolean; mtu?: number }
  /** `foreign`: the bridge is not vnet's (forward = "bridge"), so the journal records the address as vnet's */
  | { kind: 'add-address'; network: string; bridge: string; address: string; prefix: number; foreign?: boolean }
  | { kind: 'delete-address'; network: string; bridge: string; address: string; prefix: number }
  /** `restore`: the value before vnet changed it, journaled so that it can be put back */
  | { kind: 'set-sysctl'; key: string; value: string; restore?: string }
  | { kind: 'firewall'; what: string; tx: Transaction }
  | { kind: 'host-firewall'; integration: string; network: string; bridge: string; bind: boolean; mode: ForwardMode }
  /** `dns`: register it for the bridge with the host's resolver; absent: revert the bridge's settings there */
  | { kind: 'host-dns'; network: string; bridge: string; dns?: LinkDns }
  | { kind: 'start-dhcp'; network: string; config: DhcpConfig }
  | { kind: 'stop-dhcp'; network: string };

export type StepKind = Step['kind'];

export interface PlannedStep {
  step: Step;
  /** how to take this step back if a later one fails */
  undo?: Step;
}

export function describe(step: Step): string {
  switch (step.kind) {
    case 'create-bridge':
    case 'delete-bridge':
      return `${step.kind} ${step.bridge}`;
    case 'set-link':
      return `set ${step.bridge}${step.mtu !== undefined ? ` mtu ${step.mtu}` : ''}${step.up === undefined ? '' : step.up ? ' up' : ' down'}`;
    case 'add-address':
    case 'delete-address':
      return `${step.kind} ${step.address}/${step.prefix} on ${step.bridge}`;
    case 'set-sysctl':
      return `set ${step.key}=${step.value}`;
    case 'firewall':
      return `nft: ${step.what}`;
    case 'host-firewall':
      return `${step.integration}: ${step.bind ? 'let' : 'stop letting'} ${step.bridge} through`;
    case 'start-dhcp':
    case 'stop-dhcp':
      return `${step.kind} for ${step.network}`;
    case 'host-dns':
      return step.dns ? `host resolver: ${step.dns.domains.join(' ')} via ${step.dns.servers.join(' ')} on ${step.bridge}` : `host resolver: forget ${step.bridge}`;
  }
}
