/**
 * A log file with a size cap: vnetd's log when `vnet up` started it (VNET_LOG_FILE).
 * Lines are appended; a line that would take the file past `maxBytes` first renames it to
 * FILE.1 (replacing the previous one) and starts a new FILE, so the two together never
 * hold much more than twice the cap (a single line longer than the cap still goes whole).
 *
 * A pino destination (it needs only write()). Writes are synchronous, like pino's own
 * default destination: one short line to a local file, and a rename and an open once per
 * `maxBytes`, so the event loop never waits long. A failing write (disk full, the folder
 * gone) is counted and dropped, never thrown into the code that logged: logging must not
 * take the daemon down. The count is written into the file once writing works again.
 *
 * What is not written through this object (vnetd's stderr, which `vnet up` points at the
 * same file for a crash message) is not counted against the cap.
 */
import { closeSync, constants, fstatSync, openSync, renameSync, writeSync } from 'node:fs';

/** vnetd.log's default cap: 8 MiB, plus one rotated vnetd.log.1 */
export const DEFAULT_LOG_MAX_BYTES = 8 * 1024 * 1024;

export interface CappedLogFileOptions {
  /** rotate before the file would grow past this many bytes */
  maxBytes?: number;
  /** mode of a file this creates */
  mode?: number;
}

export class CappedLogFile {
  readonly path: string;
  readonly maxBytes: number;
  private readonly mode: number;
  private fd = -1;
  private size = 0;
  /** lines that could not be written */
  private lost = 0;

  constructor(path: string, opts: CappedLogFileOptions = {}) {
    this.path = path;
    this.maxBytes = opts.maxBytes ?? DEFAULT_LOG_MAX_BYTES;
    this.mode = opts.mode ?? 0o640;
    if (!Number.isSafeInteger(this.maxBytes) || this.maxBytes < 1) throw new RangeError(`log file cap must be a positive integer, not ${opts.maxBytes}`);
    this.open(); // a file that cannot be opened at start is an error the caller reports
  }

  /** the pino destination interface */
  write(chunk: string): boolean {
    const buf = Buffer.from(chunk, 'utf8');
    try {
      if (this.fd < 0) this.open();
      if (this.size > 0 && this.size + buf.length > this.maxBytes) this.rotate();
      if (this.lost) this.note(`{"level":40,"time":${Date.now()},"msg":"${this.lost} log line(s) lost: the log file could not be written"}\n`);
      this.writeAll(buf);
    } catch {
      this.lost += 1;
      this.closeQuietly();
    }
    return true;
  }

  close(): void {
    this.closeQuietly();
  }

  private note(line: string): void {
    this.writeAll(Buffer.from(line, 'utf8'));
    this.lost = 0;
  }

  private writeAll(buf: Buffer): void {
    let off = 0;
    while (off < buf.length) off += writeSync(this.fd, buf, off, buf.length - off);
    this.size += buf.length;
  }

  private open(): void {
    // O_APPEND: vnetd's stderr writes to the same file; O_NOFOLLOW: never through a planted link
    this.fd = openSync(this.path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, this.mode);
    this.size = fstatSync(this.fd).size;
  }

  /** FILE -> FILE.1, then a new FILE. A rename that fails (FILE deleted meanwhile) still reopens. */
  private rotate(): void {
    this.closeQuietly();
    try {
      renameSync(this.path, `${this.path}.1`);
    } catch {
      /* reopened below in any case */
    }
    this.open();
  }

  private closeQuietly(): void {
    if (this.fd < 0) return;
    try {
      closeSync(this.fd);
    } catch {
      /* already closed */
    }
    this.fd = -1;
  }
}
