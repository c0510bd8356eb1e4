/**
 * The two halves of systemd's service protocol that vnetd uses, without libsystemd:
 * - sdNotify: one datagram to $NOTIFY_SOCKET ("READY=1", "STOPPING=1", "STATUS=...").
 * - listenFds: sockets passed by socket activation ($LISTEN_FDS from fd 3, for $LISTEN_PID).
 */
import koffi from 'koffi';

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_NOSIGNAL = 0x4000;
const F_SETFD = 2;
const FD_CLOEXEC = 1;
const SUN_PATH_MAX = 108;
const SD_LISTEN_FDS_START = 3;

export class NotifyError extends Error {
  override name = 'NotifyError';
}

interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  sendto(fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, addrlen: number): number;
  close(fd: number): number;
  fcntl(fd: number, cmd: number, type: string, arg: number): number;
  strerror(errnum: number): string;
}

let libc: Libc | undefined;

function lib(): Libc {
  if (!libc) {
    const so = koffi.load('libc.so.6');
    libc = {
      socket: so.func('int socket(int domain, int type, int protocol)'),
      sendto: so.func('intptr_t sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)'),
      close: so.func('int close(int fd)'),
      fcntl: so.func('int fcntl(int fd, int cmd, ...)'),
      strerror: so.func('const char *strerror(int errnum)'),
    } as Libc;
  }
  return libc;
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
  const c = lib();
  const fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new NotifyError(`sd_notify: socket(AF_UNIX, SOCK_DGRAM) failed: ${c.strerror(koffi.errno())}`);
  try {
    const body = Buffer.from(state, 'utf8');
    const n = c.sendto(fd, body, body.length, MSG_NOSIGNAL, addr, len);
    if (Number(n) < 0)
      throw new NotifyError(`sd_notify: sending ${JSON.stringify(state)} to ${target} failed: ${c.strerror(koffi.errno())}`);
    return true;
  } finally {
    c.close(fd);
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
  const c = lib();
  for (let fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++) {
    if (c.fcntl(fd, F_SETFD, 'int', FD_CLOEXEC) < 0)
      throw new NotifyError(`LISTEN_FDS=${n}: fd ${fd} is not open: ${c.strerror(koffi.errno())}`);
    fds.push(fd);
  }
  return fds;
}
