/**
 * /dev/net/tun: vnetd (root) opens it to make each tap it hands to QEMU. Missing (the tun module not
 * loaded, a container without the device) nothing gets a tap. Its mode matters to programs that
 * make their own taps, not to vnet: the usual 0666 is shown when it differs.
 */
import { stat } from 'node:fs/promises';
import { failure, note, passed, reasonOf, type Finding } from './finding.js';

export interface TunFacts {
  path: string;
  /** undefined: missing */
  stat: { isCharacterDevice: boolean; major: number; minor: number; mode: number } | undefined | { unreadable: string };
}

const CHECK = 'tun';
const FIX = 'sudo modprobe tun   # and, if /dev/net/tun is still missing: sudo mkdir -p /dev/net && sudo mknod -m 0666 /dev/net/tun c 10 200';

export function judgeTun(f: TunFacts): Finding[] {
  const s = f.stat;
  if (s === undefined) return [failure(CHECK, `${f.path} does not exist: vnetd cannot make taps, so no VM gets a network`, FIX)];
  if ('unreadable' in s) return [failure(CHECK, `${f.path} cannot be examined (${s.unreadable}): vnetd may not be able to make taps`, FIX)];
  if (!s.isCharacterDevice || s.major !== 10 || s.minor !== 200)
    return [failure(CHECK, `${f.path} is not the tun device (character device 10:200): vnetd cannot make taps`, `sudo rm ${f.path} && ${FIX}`)];
  const mode = s.mode & 0o7777;
  if (mode !== 0o666) return [note(CHECK, `${f.path} has mode ${mode.toString(8).padStart(4, '0')} (usually 0666); vnetd opens it as root, so vnet is not affected`)];
  return [passed(CHECK)];
}

export async function gatherTun(file = '/dev/net/tun'): Promise<TunFacts> {
  try {
    const st = await stat(file);
    return { path: file, stat: { isCharacterDevice: st.isCharacterDevice(), major: Math.floor(st.rdev / 256) & 0xfff, minor: (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00), mode: st.mode } };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { path: file, stat: undefined };
    return { path: file, stat: { unreadable: reasonOf(err) } };
  }
}
