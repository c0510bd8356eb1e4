/**
 * Advisory whole-file locks across processes: flock(2) through koffi (Node has none).
 * The lock belongs to the open file description, so two opens of the same file in one
 * process exclude each other too. Waiting polls with LOCK_NB so the event loop never blocks.
 */
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import koffi from 'koffi';

const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;

let flockFn: ((fd: number, op: number) => number) | undefined;

function libcFlock(): (fd: number, op: number) => number {
  if (!flockFn) {
    const libc = koffi.load('libc.so.6');
    flockFn = libc.func('int flock(int fd, int operation)') as (fd: number, op: number) => number;
  }
  return flockFn;
}

export class LockError extends Error {
  override name = 'LockError';
  constructor(
    readonly path: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`lock ${path}: ${message}`, options);
  }
}

export interface FileLock {
  readonly path: string;
  release(): Promise<void>;
}

function errnoName(code: number): string {
  for (const [name, value] of Object.entries(koffi.os.errno)) if (value === code) return name;
  return `errno ${code}`;
}

/**
 * Take an exclusive flock on `path` (created with `mode` if missing; a symlink there is
 * refused). Waits up to `timeoutMs`, then throws LockError.
 */
export async function lockFile(path: string, opts: { mode?: number; timeoutMs?: number } = {}): Promise<FileLock> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, opts.mode ?? 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ELOOP' ? 'is a symlink; refusing to follow it' : `cannot open (${code ?? String(err)})`;
    throw new LockError(path, why, { cause: err });
  }
  const flock = libcFlock();
  const deadline = Date.now() + timeoutMs;
  let delay = 2;
  for (;;) {
    if (flock(fh.fd, LOCK_EX | LOCK_NB) === 0) break;
    const errno = koffi.errno();
    if (errno !== koffi.os.errno.EWOULDBLOCK && errno !== koffi.os.errno.EINTR) {
      await fh.close();
      throw new LockError(path, `flock failed: ${errnoName(errno)}`);
    }
    if (Date.now() >= deadline) {
      await fh.close();
      throw new LockError(path, `still held by another process after ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, delay + Math.random() * delay));
    delay = Math.min(delay * 2, 50);
  }
  let released = false;
  return {
    path,
    async release() {
      if (released) return;
      released = true;
      flock(fh.fd, LOCK_UN);
      await fh.close();
    },
  };
}

/** Run `fn` while holding the lock on `path`. */
export async function withFileLock<T>(path: string, fn: () => Promise<T>, opts?: { mode?: number; timeoutMs?: number }): Promise<T> {
  const lock = await lockFile(path, opts);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}
