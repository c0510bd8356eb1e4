/**
 * AppArmor's profile of dnsmasq (Ubuntu: /etc/apparmor.d/usr.sbin.dnsmasq) confines every
 * /usr/sbin/dnsmasq, vnet's too, to libvirt's and NetworkManager's folders: vnet's dnsmasq cannot
 * read its configuration in /run/vnet/dnsmasq or write its leases in /var/lib/vnet/dnsmasq, and
 * exits. vnet ships etc/apparmor.d/local/vnet-dnsmasq, which `make install` puts in
 * /etc/apparmor.d/local/ and includes from local/usr.sbin.dnsmasq (the profile's own hook for
 * site additions). This check reads which profiles the kernel has loaded and whether the hook
 * includes vnet's file.
 */
import { readFile } from 'node:fs/promises';
import { couldNotRead, failure, isUnreadable, note, passed, reasonOf, warning, type Finding, type Unreadable } from './finding.js';
import type { Scope } from './scope.js';

export const APPARMOR_VNET_FILE = 'local/vnet-dnsmasq';
const DEFAULT_RUNTIME = '/run/vnet';
const DEFAULT_STATE = '/var/lib/vnet';

export interface AppArmorFacts {
  /** /sys/kernel/security/apparmor/profiles; undefined: AppArmor is not enabled */
  loaded: string | undefined | Unreadable;
  /** /etc/apparmor.d/usr.sbin.dnsmasq; undefined: no such file */
  profile: string | undefined | Unreadable;
  /** /etc/apparmor.d/local/usr.sbin.dnsmasq */
  local: string | undefined | Unreadable;
  /** /etc/apparmor.d/local/vnet-dnsmasq */
  vnetRules: string | undefined | Unreadable;
}

const CHECK = 'apparmor';

/** The mode of dnsmasq's profile among the loaded ones ("enforce", "complain"), or undefined. */
export function dnsmasqMode(loaded: string): string | undefined {
  for (const line of loaded.split('\n')) {
    const m = /^(\S*dnsmasq) \((\w+)\)$/.exec(line.trim());
    if (m && (m[1] === 'dnsmasq' || m[1]!.endsWith('/dnsmasq'))) return m[2];
  }
  return undefined;
}

/** Does the text include vnet's file (an `include` or `#include` line naming local/vnet-dnsmasq)? */
export function includesVnet(text: string): boolean {
  return text.split('\n').some((l) => /^\s*#?include\s+(if\s+exists\s+)?[<"][^>"]*local\/vnet-dnsmasq[>"]/.test(l));
}

const FIX = 'sudo make install   # puts /etc/apparmor.d/local/vnet-dnsmasq and includes it from local/usr.sbin.dnsmasq; then: sudo apparmor_parser -r /etc/apparmor.d/usr.sbin.dnsmasq';

export function judgeAppArmor(f: AppArmorFacts, scope: Scope): Finding[] {
  if (f.loaded === undefined && f.profile === undefined) return [passed(CHECK)];
  if (isUnreadable(f.profile) || isUnreadable(f.local) || isUnreadable(f.vnetRules)) return [couldNotRead(CHECK, 'the AppArmor profile of dnsmasq in /etc/apparmor.d', 'permission denied')];
  const mode = typeof f.loaded === 'string' ? dnsmasqMode(f.loaded) : undefined;
  // AppArmor on and no dnsmasq profile loaded (none installed, or disabled): nothing confines it
  if (typeof f.loaded === 'string' && mode === undefined) return [passed(CHECK)];
  // no profile file and none loaded that doctor could see
  if (f.profile === undefined && mode === undefined) return [passed(CHECK)];
  const hooked = f.local !== undefined && includesVnet(f.local) && f.vnetRules !== undefined;
  const hookInProfile = f.profile === undefined || /local\/usr\.sbin\.dnsmasq/.test(f.profile);
  const out: Finding[] = [];
  if (!hooked || !hookInProfile) {
    const why = !hookInProfile
      ? '/etc/apparmor.d/usr.sbin.dnsmasq has no include of local/usr.sbin.dnsmasq, so vnet\'s rules cannot reach it'
      : f.vnetRules === undefined
        ? '/etc/apparmor.d/local/vnet-dnsmasq is missing'
        : '/etc/apparmor.d/local/usr.sbin.dnsmasq does not include local/vnet-dnsmasq';
    const fix = hookInProfile ? FIX : "add the line `include if exists <local/vnet-dnsmasq>` inside the profile's braces in /etc/apparmor.d/usr.sbin.dnsmasq, then: sudo apparmor_parser -r /etc/apparmor.d/usr.sbin.dnsmasq";
    if (isUnreadable(f.loaded)) out.push(warning(CHECK, `AppArmor's profile of dnsmasq is installed and may be loaded (${f.loaded.unreadable} to read which are): it allows only libvirt's and NetworkManager's folders, and ${why}`, fix));
    else if (mode === 'enforce')
      out.push(failure(CHECK, `AppArmor confines dnsmasq (profile in enforce mode) to libvirt's and NetworkManager's folders and ${why}: vnet's dnsmasq cannot read its configuration or write its leases, and exits`, fix));
    else if (mode !== undefined) out.push(note(CHECK, `AppArmor's profile of dnsmasq is in ${mode} mode (it logs, refuses nothing); ${why}`, fix));
    else out.push(warning(CHECK, `AppArmor's profile of dnsmasq is installed (not loaded now) and ${why}: once loaded, vnet's dnsmasq cannot run`, fix));
  }
  if (scope.paths.runtimeDir !== DEFAULT_RUNTIME || scope.paths.stateDir !== DEFAULT_STATE)
    out.push(
      note(
        CHECK,
        `vnet's folders are moved (VNET_RUNTIME_DIR ${scope.paths.runtimeDir}, VNET_STATE_DIR ${scope.paths.stateDir}); vnet's AppArmor rules name ${DEFAULT_RUNTIME} and ${DEFAULT_STATE}`,
        `add \`${scope.paths.runtimeDir}/dnsmasq/*.conf r,\` and \`${scope.paths.stateDir}/dnsmasq/*.leases rwk,\` to /etc/apparmor.d/local/vnet-dnsmasq and reload the profile`,
      ),
    );
  return out.length ? out : [passed(CHECK)];
}

async function readOrNot(file: string): Promise<string | undefined | Unreadable> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    return { unreadable: reasonOf(err) };
  }
}

export async function gatherAppArmor(opts: { securityfs?: string; etc?: string } = {}): Promise<AppArmorFacts> {
  const etc = opts.etc ?? '/etc/apparmor.d';
  return {
    loaded: await readOrNot(`${opts.securityfs ?? '/sys/kernel/security'}/apparmor/profiles`),
    profile: await readOrNot(`${etc}/usr.sbin.dnsmasq`),
    local: await readOrNot(`${etc}/local/usr.sbin.dnsmasq`),
    vnetRules: await readOrNot(`${etc}/${APPARMOR_VNET_FILE}`),
  };
}
