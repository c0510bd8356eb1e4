/**
 * Test-only fd passing through koffi: socketpairs, sendmsg with SCM_RIGHTS, recvmsg collecting fds.
 * Kept apart from src/sys/libc.ts so helper tests do not depend on the daemon's own bindings.
 * Layouts are Linux LP64 (cmsghdr: size_t len, int level, int type).
 */
import koffi from 'koffi';

const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const AF_UNIX = 1;
const SOCK_CLOEXEC = 0o2000000;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
const MSG_CMSG_CLOEXEC = 0x40000000;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;

type Fn = (...args: any[]) => any; // eslint-disable-line @typescript-eslint/no-explicit-any
let fns: { socketpair: Fn; sendmsg: Fn; recvmsg: Fn; close: Fn } | undefined;

function libc() {
  if (fns) return fns;
  const so = koffi.load('libc.so.6');
  const iovec = koffi.struct('scm_test_iovec', { iov_base: 'void *', iov_len: 'size_t' });
  const msghdr = koffi.struct('scm_test_msghdr', {
    msg_name: 'void *',
    msg_namelen: 'uint32_t',
    msg_iov: koffi.pointer(iovec),
    msg_iovlen: 'size_t',
    msg_control: 'void *',
    msg_controllen: 'size_t',
    msg_flags: 'int',
  });
  fns = {
    socketpair: so.func('int socketpair(int domain, int type, int protocol, _Out_ int *sv)'),
    sendmsg: so.func('sendmsg', 'long', ['int', koffi.pointer(msghdr), 'int']),
    recvmsg: so.func('recvmsg', 'long', ['int', koffi.inout(koffi.pointer(msghdr)), 'int']),
    close: so.func('int close(int fd)'),
  };
  return fns;
}

function fail(call: string): never {
  throw new Error(`${call}: errno ${koffi.errno()}`);
}

/** A connected AF_UNIX pair (close-on-exec), stream by default. */
export function socketpair(type = SOCK_STREAM): [number, number] {
  const sv = [-1, -1];
  if (libc().socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) < 0) fail('socketpair');
  return [sv[0]!, sv[1]!];
}

export function closeFd(fd: number): void {
  libc().close(fd);
}

/** One sendmsg of `data` with `fds` attached as one SCM_RIGHTS message (none when empty). */
export function sendWithFds(sock: number, data: Buffer, fds: number[]): void {
  let control: Buffer | null = null;
  if (fds.length > 0) {
    const len = 16 + 4 * fds.length;
    control = Buffer.alloc((len + 7) & ~7);
    control.writeBigUInt64LE(BigInt(len), 0);
    control.writeInt32LE(SOL_SOCKET, 8);
    control.writeInt32LE(SCM_RIGHTS, 12);
    fds.forEach((fd, i) => control!.writeInt32LE(fd, 16 + 4 * i));
  }
  const msg = {
    msg_name: null,
    msg_namelen: 0,
    msg_iov: [{ iov_base: data, iov_len: data.length }],
    msg_iovlen: 1,
    msg_control: control,
    msg_controllen: control ? control.length : 0,
    msg_flags: 0,
  };
  const n = Number(libc().sendmsg(sock, msg, MSG_NOSIGNAL));
  if (n !== data.length) fail(`sendmsg fd ${sock} (sent ${n} of ${data.length})`);
}

/**
 * One recvmsg without waiting: the bytes and every fd that came with them. `eof` when the peer has
 * closed and nothing is left; `empty` when nothing is queued but the peer is still open.
 */
export function recvNow(sock: number, max = 4096): { data: Buffer; fds: number[]; empty: boolean } {
  const data = Buffer.alloc(max);
  const control = Buffer.alloc(256);
  const msg = {
    msg_name: null,
    msg_namelen: 0,
    msg_iov: [{ iov_base: data, iov_len: max }],
    msg_iovlen: 1,
    msg_control: control,
    msg_controllen: control.length,
    msg_flags: 0,
  };
  const n = Number(libc().recvmsg(sock, msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC));
  if (n < 0) {
    if (koffi.errno() === 11) return { data: Buffer.alloc(0), fds: [], empty: true };
    fail(`recvmsg fd ${sock}`);
  }
  const fds: number[] = [];
  const clen = Number(msg.msg_controllen);
  for (let off = 0; off + 16 <= clen; ) {
    const len = Number(control.readBigUInt64LE(off));
    if (len < 16 || off + len > clen) break;
    if (control.readInt32LE(off + 8) === SOL_SOCKET && control.readInt32LE(off + 12) === SCM_RIGHTS)
      for (let p = off + 16; p + 4 <= off + len; p += 4) fds.push(control.readInt32LE(p));
    off += (len + 7) & ~7;
  }
  return { data: data.subarray(0, n), fds, empty: false };
}

/** The fd behind a Node net.Socket / net.Server (libuv's handle). */
export function fdOf(owner: unknown): number {
  const fd = (owner as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('socket has no open fd');
  return fd;
}
