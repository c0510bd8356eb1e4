/**
 * One vnetd per runtime folder. Two would fight over the same bridges, rules and dnsmasq
 * children, and the second would delete the first one's socket. vnetd takes an exclusive
 * flock on RUNTIME/vnetd.lock before it touches anything else (socket, state, dnsmasq);
 * the kernel releases it when the holder dies, even by SIGKILL, so there is never a stale
 * lock to clean up. The holder writes its pid into the file, for the refusal message.
 */
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { tryLockFile, type HeldFileLock } from '../sys/flock.js';

export class AlreadyRunningError extends Error {
  override name = 'AlreadyRunningError';
  constructor(
    readonly lockPath: string,
    readonly holder: number | undefined,
  ) {
    const who = holder === undefined ? 'another vnetd (its pid is not recorded yet)' : `another vnetd (pid ${holder})`;
    super(`${who} already runs on ${path.dirname(lockPath)}: it holds ${lockPath}; not starting a second one`);
  }
}

export function lockPath(runtimeDir: string): string {
  return path.join(runtimeDir, 'vnetd.lock');
}

/** the pid recorded in the lock file, if it holds one */
async function recordedPid(file: string): Promise<number | undefined> {
  // the holder writes its pid right after taking the lock: a racing reader may find it empty
  for (let i = 0; i < 20; i += 1) {
    const text = await readFile(file, 'utf8').catch(() => '');
    if (/^\d+\n$/.test(text)) return Number(text.trim());
    await new Promise((r) => setTimeout(r, 25));
  }
  return undefined;
}

/**
 * Take the lock of `runtimeDir` (creating the folder) and record our pid in it, or throw
 * AlreadyRunningError naming the holder. Keep the returned lock referenced for the life of
 * the process: a garbage-collected file handle is closed, and that would drop the lock.
 */
export async function takeInstanceLock(runtimeDir: string): Promise<HeldFileLock> {
  await mkdir(runtimeDir, { recursive: true, mode: 0o755 });
  const file = lockPath(runtimeDir);
  const lock = await tryLockFile(file, { mode: 0o644 });
  if (!lock) throw new AlreadyRunningError(file, await recordedPid(file));
  await lock.file.truncate(0);
  await lock.file.write(`${process.pid}\n`, 0);
  return lock;
}
