/**
 * Files vnet writes: all or nothing, never through a symlink.
 *
 * writeFileAtomic creates a fresh temp file beside the target (O_CREAT|O_EXCL|O_NOFOLLOW,
 * random name), writes, sets mode and owner on the fd, fsyncs, renames it over the
 * target and fsyncs the folder. A reader sees the old file or the new one, never half.
 * rename(2) replaces a symlink itself rather than its target, so even a symlink planted
 * after the lstat check cannot redirect the write; the check is there to refuse loudly.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';

export class AtomicFileError extends Error {
  override name = 'AtomicFileError';
  constructor(
    readonly path: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${path}: ${message}`, options);
  }
}

export interface WriteOptions {
  /** permission bits, e.g. 0o644 (applied with fchmod, so the umask does not matter) */
  mode: number;
  uid?: number;
  gid?: number;
}

function codeOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** Throws AtomicFileError when `file` is a symlink; fine when it is missing. */
export async function refuseSymlink(file: string): Promise<void> {
  let st;
  try {
    st = await lstat(file);
  } catch (err) {
    if (codeOf(err) === 'ENOENT') return;
    throw new AtomicFileError(file, `cannot lstat (${codeOf(err) ?? String(err)})`, { cause: err });
  }
  if (st.isSymbolicLink()) throw new AtomicFileError(file, 'is a symlink; refusing to write through it');
}

export async function writeFileAtomic(file: string, data: string | Uint8Array, opts: WriteOptions): Promise<void> {
  await refuseSymlink(file);
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  let fh;
  try {
    fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    throw new AtomicFileError(file, `cannot create temp file ${tmp} (${codeOf(err) ?? String(err)})`, { cause: err });
  }
  let step = 'write';
  try {
    await fh.writeFile(data);
    step = 'fchown';
    if (opts.uid !== undefined || opts.gid !== undefined) await fh.chown(opts.uid ?? -1, opts.gid ?? -1);
    step = 'fchmod';
    await fh.chmod(opts.mode);
    step = 'fsync';
    await fh.sync();
    await fh.close();
    fh = undefined;
    step = 'rename';
    await rename(tmp, file);
  } catch (err) {
    await fh?.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw new AtomicFileError(file, `${step} failed (${codeOf(err) ?? String(err)})`, { cause: err });
  }
  await fsyncDir(dir);
}

/** fsync a folder so a rename or unlink in it survives a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  let dh;
  try {
    dh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    await dh.sync();
  } catch (err) {
    throw new AtomicFileError(dir, `fsync of folder failed (${codeOf(err) ?? String(err)})`, { cause: err });
  } finally {
    await dh?.close().catch(() => undefined);
  }
}

/** Read a file, refusing a symlink at `file` (O_NOFOLLOW). ENOENT keeps its code for callers. */
export async function readFileNoFollow(file: string): Promise<Buffer> {
  let fh;
  try {
    // O_NONBLOCK: a FIFO planted here must not hang the reader; it is refused below.
    fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = codeOf(err);
    if (code === 'ENOENT') throw err;
    if (code === 'ELOOP') throw new AtomicFileError(file, 'is a symlink; refusing to follow it', { cause: err });
    throw new AtomicFileError(file, `cannot open (${code ?? String(err)})`, { cause: err });
  }
  try {
    if (!(await fh.stat()).isFile()) throw new AtomicFileError(file, 'is not a regular file');
    return await fh.readFile();
  } catch (err) {
    if (err instanceof AtomicFileError) throw err;
    throw new AtomicFileError(file, `read failed (${codeOf(err) ?? String(err)})`, { cause: err });
  } finally {
    await fh.close();
  }
}

/** Remove a file if present; a symlink there is removed itself (unlink never follows). */
export async function removeFile(file: string): Promise<boolean> {
  try {
    await unlink(file);
  } catch (err) {
    if (codeOf(err) === 'ENOENT') return false;
    throw new AtomicFileError(file, `unlink failed (${codeOf(err) ?? String(err)})`, { cause: err });
  }
  await fsyncDir(path.dirname(file));
  return true;
}
