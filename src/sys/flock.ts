/**
 * Advisory whole-file locks across processes: flock(2) from ./libc.ts (Node has none).
 * The lock belongs to the open file description, so two opens of the same file in one
 * process exclude each other too. Waiting polls with LOCK_NB so the event loop never blocks.
 */
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { flock, LOCK_EX, LOCK_NB, LOCK_UN, SyscallError } from './libc.js';

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
  const deadline = Date.now() + timeoutMs;
  let delay = 2;
  for (;;) {
    let locked: boolean;
    try {
      locked = flock(fh.fd, LOCK_EX | LOCK_NB, path);
    } catch (err) {
      await fh.close();
      throw new LockError(path, `flock failed: ${err instanceof SyscallError ? err.errno : String(err)}`, { cause: err });
    }
    if (locked) break;
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
      try {
        flock(fh.fd, LOCK_UN, path);
      } catch {
        // closing the file below releases the lock in any case
      }
      await fh.close();
    },
  };
}

export interface HeldFileLock extends FileLock {
  /** the locked file, open read-write (to record who holds it) */
  readonly file: FileHandle;
}

/**
 * One try, no waiting: an exclusive flock on `path` (created with `mode` if missing; a
 * symlink there is refused), or undefined when another open file holds it. The lock lasts
 * until release() or the process ends; the kernel drops it when the holder dies, however
 * it dies. The descriptor is close-on-exec (as every file Node opens), so children do not
 * inherit it and cannot keep it held after the holder is gone.
 */
export async function tryLockFile(path: string, opts: { mode?: number } = {}): Promise<HeldFileLock | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, opts.mode ?? 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ELOOP' ? 'is a symlink; refusing to follow it' : `cannot open (${code ?? String(err)})`;
    throw new LockError(path, why, { cause: err });
  }
  let locked: boolean;
  try {
    locked = flock(fh.fd, LOCK_EX | LOCK_NB, path);
  } catch (err) {
    await fh.close();
    throw new LockError(path, `flock failed: ${err instanceof SyscallError ? err.errno : String(err)}`, { cause: err });
  }
  if (!locked) {
    await fh.close();
    return undefined;
  }
  let released = false;
  return {
    path,
    file: fh,
    async release() {
      if (released) return;
      released = true;
      await fh.close(); // closing the only descriptor releases the lock
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
