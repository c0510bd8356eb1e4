/**
 * One error type for everything that talks to the kernel: rtnetlink requests,
 * tun ioctls and libc calls. The message names the operation and the object
 * ("create bridge virbr0: EEXIST"); `errno` is the symbolic code for callers
 * that branch on it; the original error stays in `cause`.
 */
import { getSystemErrorName } from 'node:util';

export class NetlinkError extends Error {
  override name = 'NetlinkError';
  constructor(
    /** what was being done: "create bridge", "set up", "open tap" */
    readonly op: string,
    /** what it was done to: "virbr0", "ifindex 7" */
    readonly object: string,
    /** symbolic errno: "EEXIST", "ENODEV", ... ("EUNKNOWN" when the cause had none) */
    readonly errno: string,
    options?: { cause?: unknown; detail?: string },
  ) {
    super(`${op} ${object}: ${errno}${options?.detail ? ` (${options.detail})` : ''}`, { cause: options?.cause });
  }
}

/** Symbolic name of a positive errno number ("EEXIST" for 17); "E<n>" when unknown. */
export function errnoName(n: number): string {
  try {
    return getSystemErrorName(-Math.abs(n));
  } catch {
    return `E${n}`;
  }
}

/**
 * Finds the errno of whatever a kernel call threw: the netlink package rejects
 * requests with `Error("Request rejected: EEXIST")`, its raw socket throws
 * errors carrying `code`, Node's fs errors carry `code` too.
 */
export function errnoOf(err: unknown): string {
  if (err instanceof NetlinkError) return err.errno;
  if (typeof err === 'object' && err !== null) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) return code;
    const errno = (err as { errno?: unknown }).errno;
    if (typeof errno === 'number' && errno !== 0) return errnoName(errno);
  }
  const message = err instanceof Error ? err.message : String(err);
  const m = /Request rejected: (E[A-Z0-9]+|-?\d+)/.exec(message);
  if (m?.[1]) return /^-?\d+$/.test(m[1]) ? errnoName(Number(m[1])) : m[1];
  if (/timed? ?out/i.test(message)) return 'ETIMEDOUT';
  return 'EUNKNOWN';
}

/** Wrap any error from a kernel call into a NetlinkError naming op and object. */
export function wrapError(op: string, object: string, err: unknown): NetlinkError {
  if (err instanceof NetlinkError && err.op === op && err.object === object) return err;
  const errno = errnoOf(err);
  const detail = errno === 'EUNKNOWN' && err instanceof Error ? err.message : undefined;
  return new NetlinkError(op, object, errno, { cause: err, detail });
}

/** A failed libc call or ioctl (same shape as NetlinkError: op, object, errno). */
export class SyscallError extends NetlinkError {
  override name = 'SyscallError';
}
