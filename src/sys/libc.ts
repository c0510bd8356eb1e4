/**
 * The one binding to libc (through koffi) for the calls Node does not offer: ioctl,
 * SO_PEERCRED, fd passing with SCM_RIGHTS, socketpair, socket/sendto, fcntl, flock,
 * pidfd_open and strerror. libc is loaded once, on first use. Failures throw
 * SyscallErrors naming the call and its object, with the errno name
 * ("sendmsg fd 12: EPIPE").
 *
 * Layouts are those of Linux LP64 (x86_64, aarch64).
 */
import koffi from 'koffi';
import { constants } from 'node:os';
import type { PeerCred } from '../model.js';
import { SyscallError, errnoName } from '../netlink/errors.js';

export { SyscallError, errnoName };

export type { PeerCred };

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;
const SO_PEERGROUPS = 59;
const ERANGE = 34;
const SCM_RIGHTS = 1;
export const AF_UNIX = 1;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_CLOEXEC = 0o2000000;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
const MSG_CTRUNC = 0x8;
const MSG_CMSG_CLOEXEC = 0x40000000;
const F_SETFD = 2;
const F_GETFL = 3;
const F_SETFL = 4;
const FD_CLOEXEC = 1;
const O_NONBLOCK = 0o4000;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;
const SYS_pidfd_open = 434;
const EAGAIN = 11; // also EWOULDBLOCK
const EINTR = 4;

/** cmsghdr: 16 bytes (size_t len, int level, int type), then the fds; each message padded to 8. */
const CMSG_HDR = 16;
const cmsgLen = (fds: number): number => CMSG_HDR + 4 * fds;
const cmsgSpace = (fds: number): number => (cmsgLen(fds) + 7) & ~7;
/** How many fds one recvmsg accepts; more in one message truncate it (an error). */
const RECV_MAX_FDS = 16;

type Fn = (...args: any[]) => any; // eslint-disable-line @typescript-eslint/no-explicit-any
interface Libc {
  ioctlPtr: Fn;
  close: Fn;
  getsockopt: Fn;
  setsockopt: Fn;
  sendmsg: Fn;
  recvmsg: Fn;
  socketpair: Fn;
  socket: Fn;
  sendto: Fn;
  fcntl: Fn;
  flock: Fn;
  syscall: Fn;
  strerror: Fn;
}

let lib: Libc | undefined;

function libc(): Libc {
  if (lib) return lib;
  const so = koffi.load('libc.so.6');
  const iovec = koffi.struct('vnet_iovec', { iov_base: 'void *', iov_len: 'size_t' });
  const msghdr = koffi.struct('vnet_msghdr', {
    msg_name: 'void *',
    msg_namelen: 'uint32_t',
    msg_iov: koffi.pointer(iovec),
    msg_iovlen: 'size_t',
    msg_control: 'void *',
    msg_controllen: 'size_t',
    msg_flags: 'int',
  });
  lib = {
    ioctlPtr: so.func('ioctl', 'int', ['int', 'unsigned long', '...']),
    close: so.func('int close(int fd)'),
    getsockopt: so.func('int getsockopt(int fd, int level, int name, _Out_ void *val, _Inout_ uint32_t *len)'),
    setsockopt: so.func('int setsockopt(int fd, int level, int name, const void *val, uint32_t len)'),
    sendmsg: so.func('sendmsg', 'long', ['int', koffi.pointer(msghdr), 'int']),
    recvmsg: so.func('recvmsg', 'long', ['int', koffi.inout(koffi.pointer(msghdr)), 'int']),
    socketpair: so.func('int socketpair(int domain, int type, int protocol, _Out_ int *sv)'),
    socket: so.func('int socket(int domain, int type, int protocol)'),
    sendto: so.func('long sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)'),
    fcntl: so.func('fcntl', 'int', ['int', 'int', '...']),
    flock: so.func('int flock(int fd, int operation)'),
    syscall: so.func('syscall', 'long', ['long', '...']),
    strerror: so.func('const char *strerror(int errnum)'),
  };
  return lib;
}

function fail(call: string, object: string, errno = koffi.errno()): never {
  throw new SyscallError(call, object, errnoName(errno));
}

/** ioctl with a pointer argument (the buffer is read and written in place). Returns the result (>= 0). */
export function ioctlBuf(fd: number, request: number, buf: Buffer, what = `fd ${fd}`): number {
  const r = libc().ioctlPtr(fd, request, 'void *', buf) as number;
  if (r < 0) fail(`ioctl 0x${request.toString(16)}`, what);
  return r;
}

/** ioctl with an integer argument passed by value (TUNSETOWNER, TUNSETPERSIST...). */
export function ioctlInt(fd: number, request: number, value: number, what = `fd ${fd}`): number {
  const r = libc().ioctlPtr(fd, request, 'unsigned long', value) as number;
  if (r < 0) fail(`ioctl 0x${request.toString(16)}`, what);
  return r;
}

export function closeFd(fd: number): void {
  if (libc().close(fd) < 0) fail('close', `fd ${fd}`);
}

/** setsockopt with an int value. */
export function setSockOptInt(fd: number, level: number, name: number, value: number, what = `fd ${fd}`): void {
  const buf = Buffer.alloc(4);
  buf.writeInt32LE(value, 0);
  if (libc().setsockopt(fd, level, name, buf, 4) < 0) fail(`setsockopt ${level}/${name}`, what);
}

/** Credentials the kernel recorded for the peer of a connected unix socket. */
export function getPeerCred(fd: number): PeerCred {
  const buf = Buffer.alloc(12);
  const len = [12];
  if (libc().getsockopt(fd, SOL_SOCKET, SO_PEERCRED, buf, len) < 0) fail('getsockopt SO_PEERCRED', `fd ${fd}`);
  return { pid: buf.readInt32LE(0), uid: buf.readUInt32LE(4), gid: buf.readUInt32LE(8) };
}

/** Supplementary groups of the peer as they were at connect time (SO_PEERGROUPS, Linux ≥ 4.13). */
export function getPeerGroups(fd: number): number[] {
  for (let room = 64; room <= 65536; room *= 4) {
    const buf = Buffer.alloc(room * 4);
    const len = [buf.length];
    if (libc().getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, buf, len) < 0) {
      if (koffi.errno() === ERANGE) continue;
      fail('getsockopt SO_PEERGROUPS', `fd ${fd}`);
    }
    const n = (len[0] ?? 0) / 4;
    return Array.from({ length: n }, (_, i) => buf.readUInt32LE(i * 4));
  }
  throw new SyscallError('getsockopt SO_PEERGROUPS', `fd ${fd}`, 'ERANGE');
}

/** One SCM_RIGHTS control message carrying `fds`. */
function rightsCmsg(fds: readonly number[]): Buffer {
  const c = Buffer.alloc(cmsgSpace(fds.length));
  c.writeBigUInt64LE(BigInt(cmsgLen(fds.length)), 0);
  c.writeInt32LE(SOL_SOCKET, 8);
  c.writeInt32LE(SCM_RIGHTS, 12);
  fds.forEach((fd, i) => c.writeInt32LE(fd, CMSG_HDR + 4 * i));
  return c;
}

/** The msghdr of one sendmsg of `data` with `fds` attached (none when empty). */
function sendMsg(data: Buffer, fds: readonly number[]) {
  const control = fds.length > 0 ? rightsCmsg(fds) : null;
  return {
    msg_name: null,
    msg_namelen: 0,
    msg_iov: [{ iov_base: data, iov_len: data.length }],
    msg_iovlen: 1,
    msg_control: control,
    msg_controllen: control ? control.length : 0,
    msg_flags: 0,
  };
}

/**
 * One sendmsg of `data` (at least one byte) with `fds` attached as one SCM_RIGHTS message,
 * that never waits (MSG_DONTWAIT): returns the bytes sent (the fds went with the first of
 * them; fewer than `data.length` leaves the rest to send), or -1 when the socket's buffer is
 * full (EAGAIN) and nothing was sent. Other failures throw ("sendmsg fd 12: EPIPE").
 */
export function trySendFds(sockFd: number, data: Buffer, fds: readonly number[]): number {
  if (data.length === 0) throw new RangeError(`sendmsg fd ${sockFd}: needs at least one byte of data`);
  const msg = sendMsg(data, fds);
  for (;;) {
    const n = Number(libc().sendmsg(sockFd, msg, MSG_NOSIGNAL | MSG_DONTWAIT));
    if (n >= 0) return n;
    const errno = koffi.errno();
    if (errno === EINTR) continue;
    if (errno === EAGAIN) return -1;
    fail('sendmsg', `fd ${sockFd}`, errno);
  }
}

/**
 * Send `data` (at least one byte) with `fds` attached as one SCM_RIGHTS message (none when
 * `fds` is empty), in one sendmsg. It waits only as the socket does: a blocking socket blocks
 * in the kernel; a non-blocking one whose buffer is full throws EAGAIN at once (a server must
 * not wait for a client: it uses trySendFds). A short write throws too, since the peer would
 * see a partial frame.
 */
export function sendFds(sockFd: number, data: Buffer, fds: readonly number[]): void {
  if (data.length === 0) throw new RangeError(`sendmsg fd ${sockFd}: needs at least one byte of data`);
  const msg = sendMsg(data, fds);
  for (;;) {
    const n = Number(libc().sendmsg(sockFd, msg, MSG_NOSIGNAL));
    if (n === data.length) return;
    if (n >= 0) throw new SyscallError('sendmsg', `fd ${sockFd}`, 'EMSGSIZE', { detail: `sent ${n} of ${data.length} bytes` });
    const errno = koffi.errno();
    if (errno !== EINTR) fail('sendmsg', `fd ${sockFd}`, errno);
  }
}

/** sendFds with exactly one fd attached. */
export function sendFd(sockFd: number, data: Buffer, fdToSend: number): void {
  sendFds(sockFd, data, [fdToSend]);
}

/**
 * Receive up to `max` bytes and every fd passed with them (close-on-exec), in one
 * recvmsg. Blocks on a blocking socket; with `dontWait` (or on a non-blocking
 * socket) throws EAGAIN when nothing is queued. `data` is empty at end of stream.
 * More than 16 fds in one message is an error (EMSGSIZE; those received are closed).
 */
export function recvFds(sockFd: number, max = 4096, opts: { dontWait?: boolean } = {}): { data: Buffer; fds: number[] } {
  const data = Buffer.alloc(max);
  const control = Buffer.alloc(cmsgSpace(RECV_MAX_FDS));
  const msg = {
    msg_name: null,
    msg_namelen: 0,
    msg_iov: [{ iov_base: data, iov_len: max }],
    msg_iovlen: 1,
    msg_control: control,
    msg_controllen: control.length,
    msg_flags: 0,
  };
  let n: number;
  for (;;) {
    n = Number(libc().recvmsg(sockFd, msg, MSG_CMSG_CLOEXEC | (opts.dontWait ? MSG_DONTWAIT : 0)));
    if (n >= 0) break;
    const errno = koffi.errno();
    if (errno !== EINTR) fail('recvmsg', `fd ${sockFd}`, errno);
  }
  const fds: number[] = [];
  let off = 0;
  const clen = Number(msg.msg_controllen);
  while (off + CMSG_HDR <= clen) {
    const len = Number(control.readBigUInt64LE(off));
    if (len < CMSG_HDR || off + len > clen) break;
    if (control.readInt32LE(off + 8) === SOL_SOCKET && control.readInt32LE(off + 12) === SCM_RIGHTS) {
      for (let p = off + CMSG_HDR; p + 4 <= off + len; p += 4) fds.push(control.readInt32LE(p));
    }
    off += (len + 7) & ~7;
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    for (const fd of fds) libc().close(fd);
    throw new SyscallError('recvmsg', `fd ${sockFd}`, 'EMSGSIZE', { detail: 'control data truncated' });
  }
  return { data: data.subarray(0, n), fds };
}

/**
 * recvFds for a peer that passes at most one fd: the first is returned, any
 * extra ones are closed.
 */
export function recvFd(sockFd: number, max = 4096, opts: { dontWait?: boolean } = {}): { data: Buffer; fd?: number } {
  const { data, fds } = recvFds(sockFd, max, opts);
  const [fd, ...extra] = fds;
  for (const e of extra) libc().close(e);
  const out: { data: Buffer; fd?: number } = { data };
  if (fd !== undefined) out.fd = fd;
  return out;
}

/** A connected pair of blocking, close-on-exec unix sockets (stream unless `type` says SOCK_DGRAM). */
export function socketpair(type: number = SOCK_STREAM): [number, number] {
  const sv = [-1, -1];
  if (libc().socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) < 0) fail('socketpair', 'AF_UNIX');
  return [sv[0] as number, sv[1] as number];
}

/** socket(2): a new socket fd (add SOCK_CLOEXEC to `type` for close-on-exec). */
export function socket(domain: number, type: number, protocol = 0): number {
  const fd = libc().socket(domain, type, protocol) as number;
  if (fd < 0) fail('socket', `domain ${domain} type ${type & ~SOCK_CLOEXEC}`);
  return fd;
}

/**
 * One sendto(2) of `data` to the socket address `addr` (its first `addrLen` bytes),
 * without SIGPIPE. Returns the bytes sent.
 */
export function sendto(fd: number, data: Buffer, addr: Buffer, addrLen: number, what = `fd ${fd}`): number {
  const n = Number(libc().sendto(fd, data, data.length, MSG_NOSIGNAL, addr, addrLen));
  if (n < 0) fail('sendto', what);
  return n;
}

/** Mark `fd` close-on-exec (fcntl F_SETFD FD_CLOEXEC); throws EBADF when it is not open. */
export function setCloseOnExec(fd: number): void {
  if ((libc().fcntl(fd, F_SETFD, 'int', FD_CLOEXEC) as number) < 0) fail('fcntl F_SETFD', `fd ${fd}`);
}

/**
 * flock(2) on `fd` (LOCK_EX, LOCK_UN, ... with LOCK_NB). Returns false when LOCK_NB
 * was given and another open file description holds the lock; EINTR is retried.
 */
export function flock(fd: number, operation: number, what = `fd ${fd}`): boolean {
  for (;;) {
    if ((libc().flock(fd, operation) as number) === 0) return true;
    const errno = koffi.errno();
    if (errno === EINTR) continue;
    if (errno === EAGAIN && operation & LOCK_NB) return false;
    fail('flock', what, errno);
  }
}

/** The C library's text for an errno, by name ("ENOENT") or number: "No such file or directory". */
export function strerror(errno: string | number): string {
  const n = typeof errno === 'number' ? errno : constants.errno[errno as keyof typeof constants.errno];
  if (n === undefined) return errno as string;
  return libc().strerror(n) as string;
}

export function setNonBlocking(fd: number, on: boolean): void {
  const flags = libc().fcntl(fd, F_GETFL, 'int', 0) as number;
  if (flags < 0) fail('fcntl F_GETFL', `fd ${fd}`);
  const next = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
  if (next !== flags && (libc().fcntl(fd, F_SETFL, 'int', next) as number) < 0) fail('fcntl F_SETFL', `fd ${fd}`);
}

/** A pidfd for `pid` (Linux 5.3+), close-on-exec; throws ESRCH if the process is gone. */
export function pidfdOpen(pid: number): number {
  const r = Number(libc().syscall(SYS_pidfd_open, 'long', pid, 'long', 0));
  if (r < 0) fail('pidfd_open', `pid ${pid}`);
  return r;
}

/** The fd behind a Node net.Socket / net.Server of a unix socket (libuv's handle). */
export function fdOf(handleOwner: unknown): number {
  const fd = (handleOwner as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new SyscallError('get fd of', 'socket', 'EBADF', { detail: 'socket has no open handle' });
  return fd;
}
