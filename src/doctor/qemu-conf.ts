/**
 * Each user's libvirt session (virt-manager, gnome-boxes, vagrant-libvirt) runs the program its
 * ~/.config/libvirt/qemu.conf names in `bridge_helper` for every bridged interface: vnet's helper,
 * QEMU's stock setuid one (libvirt's default), or a path that is not there (then no VM with a
 * bridged interface starts). Users come from /etc/passwd (uid 1000 and up, and root); doctor reads
 * the files it can (as a user, its own) and says which it could not. Each file is read as its user
 * could read it (../sys/read-as.ts: their permissions, a regular file, at most 1 MiB, never blocking):
 * a user's home is theirs, and a symlink to /etc/shadow, a FIFO or /dev/zero there must not make
 * doctor, run as root, read what the user could not, or hang.
 */
import { constants } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { loadAsCaller } from '../sys/read-as.js';
import { failure, isUnreadable, note, passed, printable, type Finding, type Unreadable } from './finding.js';

export interface UserQemuConf {
  user: string;
  file: string;
  /** undefined: the user has no such file */
  text: string | undefined | Unreadable;
  /** the named helper: undefined when missing, else whether it may be run */
  helper?: { path: string; exists: boolean; executable: boolean };
}

export interface QemuConfFacts {
  users: UserQemuConf[];
}

const CHECK = 'libvirt-helper';

/** The value of `bridge_helper = "..."` in a libvirt qemu.conf (the last one wins), or undefined. */
export function bridgeHelperOf(text: string): string | undefined {
  let found: string | undefined;
  for (const line of text.split('\n')) {
    const m = /^\s*bridge_helper\s*=\s*"([^"]*)"\s*(#.*)?$/.exec(line);
    if (m) found = m[1];
  }
  return found;
}

export function judgeQemuConf(f: QemuConfFacts): Finding[] {
  const out: Finding[] = [];
  const p = printable;
  const unread = f.users.filter((u) => isUnreadable(u.text));
  for (const u of f.users) {
    if (typeof u.text !== 'string') continue;
    const named = bridgeHelperOf(u.text);
    const helper = named === undefined ? undefined : p(named);
    const file = p(u.file);
    const user = p(u.user);
    if (helper === undefined) {
      out.push(note(CHECK, `${file} sets no bridge_helper: ${user}'s session VMs use libvirt's default, QEMU's stock setuid qemu-bridge-helper`, `echo 'bridge_helper = "/usr/local/libexec/vnet-bridge-helper"' >> ${file}   # as ${user}; then let the session daemon exit (virsh -c qemu:///session shuts down after 2 minutes idle)`));
      continue;
    }
    const h = u.helper;
    if (h && !h.exists) out.push(failure(CHECK, `${file} sets bridge_helper = "${helper}", which does not exist: ${user}'s session VMs with a bridged interface do not start`, `install vnet (sudo make install) or correct the path in ${file}`));
    else if (h && !h.executable) out.push(failure(CHECK, `${file} sets bridge_helper = "${helper}", which ${user} cannot run: session VMs with a bridged interface do not start`, `sudo chmod 0755 ${helper}`));
    else if (path.basename(helper) !== 'vnet-bridge-helper') out.push(note(CHECK, `${file} sets bridge_helper = "${helper}": ${user}'s session VMs use that helper, not vnet's`));
  }
  if (unread.length > 0) out.push(note(CHECK, `could not read the libvirt qemu.conf of ${unread.map((u) => p(u.user)).join(', ')}: ${(unread[0]!.text as Unreadable).unreadable}`));
  return out.length ? out : [passed(CHECK)];
}

/** "name:x:uid:gid:gecos:home:shell" lines → users that may run a libvirt session. Pure. */
export function sessionUsers(passwd: string): Array<{ user: string; home: string; uid: number; gid: number }> {
  const out: Array<{ user: string; home: string; uid: number; gid: number }> = [];
  for (const line of passwd.split('\n')) {
    const f = line.split(':');
    const uid = Number(f[2]);
    if (f.length < 7 || !Number.isInteger(uid) || !(uid === 0 || (uid >= 1000 && uid < 65534)) || !path.isAbsolute(f[5]!)) continue;
    out.push({ user: f[0]!, home: f[5]!, uid, gid: Number(f[3]) });
  }
  return out;
}

async function helperState(file: string): Promise<UserQemuConf['helper']> {
  try {
    if (!(await stat(file)).isFile()) return { path: file, exists: true, executable: false };
  } catch {
    return { path: file, exists: false, executable: false };
  }
  const executable = await access(file, constants.X_OK).then(
    () => true,
    () => false,
  );
  return { path: file, exists: true, executable };
}

export async function gatherQemuConf(passwdFile = '/etc/passwd'): Promise<QemuConfFacts> {
  let passwd = '';
  try {
    passwd = await readFile(passwdFile, 'utf8');
  } catch {
    return { users: [] };
  }
  const users: UserQemuConf[] = [];
  for (const { user, home, uid, gid } of sessionUsers(passwd)) {
    const file = path.join(home, '.config/libvirt/qemu.conf');
    const got = loadAsCaller(file, { uid, gids: [gid] });
    const text: UserQemuConf['text'] =
      typeof got === 'string' ? got : /\b(ENOENT|ENOTDIR)\b/.test(got.error) ? undefined : { unreadable: /\b(EACCES|EPERM)\b/.test(got.error) ? 'permission denied (run as root to check this)' : got.error };
    const named = typeof text === 'string' ? bridgeHelperOf(text) : undefined;
    users.push({ user, file, text, ...(named !== undefined ? { helper: await helperState(named) } : {}) });
  }
  return { users };
}
