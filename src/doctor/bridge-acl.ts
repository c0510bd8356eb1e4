/**
 * QEMU's bridge ACL (VNET_QEMU_CONF_DIR/bridge.conf, /etc/qemu): vnetd keeps an `allow` line for
 * each network open to every user in its own vnet.conf and one `include` of it in bridge.conf, so
 * QEMU's stock setuid qemu-bridge-helper (libvirt's default bridge_helper) lets users on the same
 * bridges. A `deny` in bridge.conf (or anything it includes) refuses a bridge to vnet's helper too.
 * gnome-boxes gives a new box a bridged interface only when bridge.conf's FIRST line is `allow
 * virbr0` (../qemu/bridge-conf.ts: boxesSees). Files are read as root would (doctor as a user
 * says what it could not read).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { evaluateAcl, type AclDecision } from '../qemu/acl.js';
import { BOXES_BRIDGE, boxesSees, isIncludeLine, parseVnetConf } from '../qemu/bridge-conf.js';
import { loadAsCaller } from '../sys/read-as.js';
import { couldNotRead, failure, isUnreadable, note, passed, reasonOf, warning, type Finding, type Unreadable } from './finding.js';
import { list, type Scope } from './scope.js';

export interface BridgeAclFacts {
  bridgeConfPath: string;
  vnetConfPath: string;
  /** undefined: no such file */
  bridgeConf: string | undefined | Unreadable;
  vnetConf: string | undefined | Unreadable;
  /** bridge → what the ACL decides for it (as root reads it) */
  decisions: Map<string, AclDecision>;
}

const CHECK = 'bridge-acl';

/** The networks any local user may use: the bridges vnet.conf should allow. */
export function openBridges(scope: Scope): string[] {
  return scope.networks.filter((n) => n.bridge.managed && !n.access.allowUsers && !n.access.allowGroups).map((n) => n.bridge.name);
}

export function judgeBridgeAcl(f: BridgeAclFacts, scope: Scope): Finding[] {
  const open = openBridges(scope);
  const out: Finding[] = [];
  for (const n of scope.networks) {
    const d = f.decisions.get(n.bridge.name);
    if (d?.denied)
      out.push(failure(CHECK, `${f.bridgeConfPath} refuses bridge ${n.bridge.name} of network ${n.name}: ${d.reason}; vnet honours bridge.conf's deny lines, so nobody gets a tap there`, `remove that line (sudoedit ${f.bridgeConfPath})`));
  }
  if (open.length === 0) return out.length ? out : [passed(CHECK)];
  if (isUnreadable(f.bridgeConf)) return [...out, couldNotRead(CHECK, f.bridgeConfPath, f.bridgeConf.unreadable)];
  if (isUnreadable(f.vnetConf)) return [...out, couldNotRead(CHECK, f.vnetConfPath, f.vnetConf.unreadable)];
  const daemonless = !(scope.status instanceof Map);
  const restart = 'sudo systemctl restart vnetd   # vnetd writes vnet.conf and the include line when it starts';
  const included = f.bridgeConf !== undefined && f.bridgeConf.split('\n').some((l) => isIncludeLine(l, f.vnetConfPath));
  const allowed = f.vnetConf === undefined ? [] : parseVnetConf(f.vnetConf);
  const missing = open.filter((b) => !allowed.includes(b));
  if (!included || missing.length > 0) {
    const what = !included ? `${f.bridgeConfPath} ${f.bridgeConf === undefined ? 'does not exist' : `has no line \`include ${f.vnetConfPath}\``}` : `${f.vnetConfPath} does not allow ${list(missing)}`;
    const problem = `${what}: QEMU's stock qemu-bridge-helper (libvirt's default bridge_helper) refuses ${list(!included ? open : missing)}; vnet-bridge-helper is not affected`;
    out.push(daemonless && f.vnetConf === undefined ? note(CHECK, problem, restart) : warning(CHECK, problem, !included ? `echo 'include ${f.vnetConfPath}' | sudo tee -a ${f.bridgeConfPath}   # or: ${restart}` : restart));
  }
  if (open.includes(BOXES_BRIDGE) && typeof f.bridgeConf === 'string' && !boxesSees(f.bridgeConf, BOXES_BRIDGE))
    out.push(
      warning(
        CHECK,
        `the first line of ${f.bridgeConfPath} is not \`allow ${BOXES_BRIDGE}\`: gnome-boxes reads only that line and gives new boxes user-mode networking instead of ${BOXES_BRIDGE}`,
        `sudo sed -i '1i allow ${BOXES_BRIDGE}' ${f.bridgeConfPath}`,
      ),
    );
  return out.length ? out : [passed(CHECK)];
}

async function readOrNot(file: string): Promise<string | undefined | Unreadable> {
  try {
    return (await readFile(file)).toString('latin1');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return { unreadable: reasonOf(err) };
  }
}

export async function gatherBridgeAcl(scope: Scope): Promise<BridgeAclFacts> {
  const dir = path.resolve(scope.paths.qemuConfDir);
  const bridgeConfPath = path.join(dir, 'bridge.conf');
  const vnetConfPath = path.join(dir, 'vnet.conf');
  const uid = process.geteuid?.() ?? 0;
  const cred = { uid, gids: [process.getegid?.() ?? 0, ...(process.getgroups?.() ?? [])] };
  const decisions = new Map<string, AclDecision>();
  for (const n of scope.networks) decisions.set(n.bridge.name, evaluateAcl(n.bridge.name, (p) => loadAsCaller(p, cred), { root: bridgeConfPath }));
  return { bridgeConfPath, vnetConfPath, bridgeConf: await readOrNot(bridgeConfPath), vnetConf: await readOrNot(vnetConfPath), decisions };
}
