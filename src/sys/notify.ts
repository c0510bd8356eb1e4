/**
 * The two halves of systemd's service protocol that vnetd uses, without libsystemd:
 * - sdNotify: one datagram to $NOTIFY_SOCKET ("READY=1", "STOPPING=1", "STATUS=...").
 * - listenFds: sockets passed by socket activation ($LISTEN_FDS from fd 3, for $LISTEN_PID).
 */
import { AF_UNIX, closeFd, sendto, setCloseOnExec, SOCK_CLOEXEC, SOCK_DGRAM, socket, strerror, SyscallError } from './libc.js';

const SUN_PATH_MAX = 108;
const SD_LISTEN_FDS_START = 3;

export class NotifyError extends Error {
  override name = 'NotifyError';
}

/** What a failed libc call said, as the C library words it ("No such file or directory"). */
function reason(err: unknown): string {
  return err instanceof SyscallError ? strerror(err.errno) : String(err);
}

/** struct sockaddr_un for a path, or an abstract name when it starts with '@'. */
export function sockaddrUn(socketPath: string): { addr: Buffer; len: number } {
  const abstract = socketPath.startsWith('@');
  const name = Buffer.from(abstract ? `\0${socketPath.slice(1)}` : socketPath, 'utf8');
  if (name.length === 0 || name.length >= SUN_PATH_MAX)
    throw new NotifyError(`NOTIFY_SOCKET ${JSON.stringify(socketPath)}: address must be 1..${SUN_PATH_MAX - 1} bytes`);
  const addr = Buffer.alloc(2 + SUN_PATH_MAX);
  addr.writeUInt16LE(AF_UNIX, 0);
  name.copy(addr, 2);
  // An abstract name is exactly its bytes; a path is counted with its NUL.
  return { addr, len: 2 + name.length + (abstract ? 0 : 1) };
}

/**
 * Send `state` (e.g. "READY=1") to the service manager. Returns false when $NOTIFY_SOCKET
 * is unset (not started by systemd), true when sent; throws NotifyError when sending fails.
 */
export function sdNotify(state: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const target = env.NOTIFY_SOCKET;
  if (!target) return false;
  const { addr, len } = sockaddrUn(target);
  let fd: number;
  try {
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC);
  } catch (err) {
    throw new NotifyError(`sd_notify: socket(AF_UNIX, SOCK_DGRAM) failed: ${reason(err)}`, { cause: err });
  }
  try {
    sendto(fd, Buffer.from(state, 'utf8'), addr, len, target);
    return true;
  } catch (err) {
    throw new NotifyError(`sd_notify: sending ${JSON.stringify(state)} to ${target} failed: ${reason(err)}`, { cause: err });
  } finally {
    closeFd(fd);
  }
}

/**
 * The fds systemd passed by socket activation ([3, 4, ...]), or [] when none were passed
 * to this process. Marks them close-on-exec, as sd_listen_fds does (Node already does so
 * for inherited fds at startup; this keeps it true whatever runs us), fails naming an fd
 * that is not open, and removes LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES from `env`.
 */
export function listenFds(env: NodeJS.ProcessEnv = process.env): number[] {
  const pid = env.LISTEN_PID;
  const count = env.LISTEN_FDS;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (!pid || !count || !/^[0-9]+$/.test(pid) || Number(pid) !== process.pid) return [];
  if (!/^[0-9]+$/.test(count)) throw new NotifyError(`LISTEN_FDS=${JSON.stringify(count)}: expected a count`);
  const n = Number(count);
  const fds: number[] = [];
  for (let fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++) {
    try {
      setCloseOnExec(fd);
    } catch (err) {
      throw new NotifyError(`LISTEN_FDS=${n}: fd ${fd} is not open: ${reason(err)}`, { cause: err });
    }
    fds.push(fd);
  }
  return fds;
}
