/**
 * SELinux (Fedora, RHEL): dnsmasq is labelled dnsmasq_exec_t and, started by a service, runs in the
 * domain dnsmasq_t, which may read and write only files of dnsmasq's own types (and libvirt's,
 * NetworkManager's). vnet's folders are labelled as their parents are (var_run_t, var_lib_t) unless
 * the policy is told otherwise: vnet's dnsmasq then cannot read its configuration or write its
 * leases. The README gives the `semanage fcontext` lines; this check reads whether SELinux
 * enforces, dnsmasq's label and the labels of vnet's dnsmasq folders (`stat -c %C`).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { run } from '../sys/run.js';
import { failure, note, passed, type Finding } from './finding.js';
import type { Scope } from './scope.js';

export interface SelinuxFacts {
  /** /sys/fs/selinux/enforce: "1" enforcing, "0" permissive; undefined: SELinux is off */
  enforce: string | undefined;
  /** the SELinux label of the dnsmasq binary, "system_u:object_r:dnsmasq_exec_t:s0" */
  dnsmasqLabel: string | undefined;
  /** each of vnet's dnsmasq folders and its label (undefined: missing or unknown) */
  folders: Array<{ path: string; label: string | undefined }>;
}

const CHECK = 'selinux';

/** The type of a label: "system_u:object_r:dnsmasq_exec_t:s0" → "dnsmasq_exec_t". */
export function typeOf(label: string | undefined): string | undefined {
  return label?.split(':')[2];
}

/** The commands that label vnet's dnsmasq folders for dnsmasq_t. */
export function semanageFix(runtimeDir: string, stateDir: string): string {
  const run = path.join(runtimeDir, 'dnsmasq');
  const lib = path.join(stateDir, 'dnsmasq');
  return `sudo semanage fcontext -a -t dnsmasq_var_run_t '${run}(/.*)?' && sudo semanage fcontext -a -t dnsmasq_lease_t '${lib}(/.*)?' && sudo restorecon -R ${run} ${lib}`;
}

export function judgeSelinux(f: SelinuxFacts, scope: Scope): Finding[] {
  if (f.enforce === undefined) return [passed(CHECK)];
  if (typeOf(f.dnsmasqLabel) !== 'dnsmasq_exec_t') return [passed(CHECK)];
  const wrong = f.folders.filter((x) => x.label !== undefined && !typeOf(x.label)?.startsWith('dnsmasq_'));
  if (wrong.length === 0) return [passed(CHECK)];
  const problem = `SELinux confines dnsmasq (dnsmasq_exec_t → dnsmasq_t) and vnet's dnsmasq folders are not labelled for it (${wrong.map((x) => `${x.path}: ${typeOf(x.label)}`).join(', ')}): vnet's dnsmasq cannot read its configuration or write its leases`;
  const fix = semanageFix(scope.paths.runtimeDir, scope.paths.stateDir);
  return [f.enforce === '1' ? failure(CHECK, problem, fix) : note(CHECK, `${problem} (SELinux is permissive now: it logs, refuses nothing)`, fix)];
}

async function labelOf(file: string): Promise<string | undefined> {
  try {
    const r = await run('stat', ['-c', '%C', '--', file], { timeoutMs: 5000 });
    const label = r.stdout.trim();
    return r.exitCode === 0 && label.includes(':') ? label : undefined;
  } catch {
    return undefined;
  }
}

export async function gatherSelinux(scope: Scope, dnsmasq: string | undefined, selinuxfs = '/sys/fs/selinux'): Promise<SelinuxFacts> {
  let enforce: string | undefined;
  try {
    enforce = (await readFile(`${selinuxfs}/enforce`, 'utf8')).trim();
  } catch {
    return { enforce: undefined, dnsmasqLabel: undefined, folders: [] };
  }
  const folders = [path.join(scope.paths.runtimeDir, 'dnsmasq'), path.join(scope.paths.stateDir, 'dnsmasq')];
  return {
    enforce,
    dnsmasqLabel: dnsmasq ? await labelOf(dnsmasq) : undefined,
    folders: await Promise.all(folders.map(async (p) => ({ path: p, label: await labelOf(p) }))),
  };
}
