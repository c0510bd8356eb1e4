/**
 * vnetd's socket protocol, spoken by the CLI, the C bridge helper and tests.
 *
 * A connection carries frames: a 4-byte big-endian length N (1..MAX_FRAME), then N bytes
 * of UTF-8 JSON. Requests are {"id": number, "method": string, "params": object};
 * replies are {"id", "ok": true, "result"} or {"id", "ok": false, "error": {"code", "message"}}.
 * The reply to a successful "tap" request carries the tap fd as SCM_RIGHTS on its bytes.
 */

export const MAX_FRAME = 64 * 1024;

export interface Request {
  id: number;
  method: string;
  params: Record<string, unknown>;
}

export interface ErrorBody {
  code: string;
  message: string;
}

export type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: ErrorBody };

export class ProtocolError extends Error {
  override name = 'ProtocolError';
  constructor(
    message: string,
    readonly code = 'EPROTO',
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function encodeFrame(value: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(value), 'utf8');
  if (body.length > MAX_FRAME) throw new ProtocolError(`frame of ${body.length} bytes exceeds ${MAX_FRAME}`);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length, 0);
  return Buffer.concat([head, body]);
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const NONE = Symbol('no complete frame');

/**
 * Incremental frame reader. push() bytes as they arrive; it returns the complete
 * frames' parsed JSON values. Throws ProtocolError on a bad length or bad JSON;
 * the caller then replies with an error and closes the connection.
 * Chunks are kept as a list and joined once per frame, so a frame trickled in byte by
 * byte costs linear, not quadratic, copying; at most one frame (4 + MAX_FRAME bytes)
 * plus the chunk that completed it is ever held.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private total = 0;
  private failed: ProtocolError | undefined;

  push(chunk: Buffer): unknown[] {
    const { frames, error } = this.read(chunk);
    if (error) throw error;
    return frames;
  }

  /**
   * Like push, but a bad frame does not lose the good frames before it: they come back with
   * the error. Once an error is returned the reader is spent and returns it again.
   */
  read(chunk: Buffer): { frames: unknown[]; error?: ProtocolError } {
    if (this.failed) return { frames: [], error: this.failed };
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.total += chunk.length;
    }
    const frames: unknown[] = [];
    try {
      for (;;) {
        const frame = this.next();
        if (frame === NONE) break;
        frames.push(frame);
      }
    } catch (err) {
      this.failed = err instanceof ProtocolError ? err : new ProtocolError(String(err), 'EPROTO', { cause: err });
      this.chunks = [];
      this.total = 0;
      return { frames, error: this.failed };
    }
    return { frames };
  }

  /** the next complete frame's value, or NONE while the next frame is incomplete */
  private next(): unknown {
    if (this.total < 4) return NONE;
    const len = this.head().readUInt32BE(0);
    if (len === 0 || len > MAX_FRAME) throw new ProtocolError(`frame length ${len} is outside 1..${MAX_FRAME}`);
    if (this.total < 4 + len) return NONE;
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.total);
    const body = all.subarray(4, 4 + len);
    const rest = all.subarray(4 + len);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.total = rest.length;
    let str: string;
    try {
      str = UTF8.decode(body);
    } catch (err) {
      throw new ProtocolError('frame is not valid UTF-8', 'EPROTO', { cause: err });
    }
    try {
      return JSON.parse(str);
    } catch (err) {
      throw new ProtocolError('frame is not valid JSON', 'EPROTO', { cause: err });
    }
  }

  /** bytes held waiting for the rest of a frame */
  get pending(): number {
    return this.total;
  }

  /** the first 4 bytes held (total >= 4), joining only as many chunks as they span */
  private head(): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= 4) return first;
    const parts: Buffer[] = [];
    let n = 0;
    for (const c of this.chunks) {
      parts.push(c);
      n += c.length;
      if (n >= 4) break;
    }
    return Buffer.concat(parts, n);
  }
}

/** Validate a parsed frame as a request; throws ProtocolError naming what is wrong. */
export function parseRequest(value: unknown): Request {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new ProtocolError('request must be a JSON object');
  const v = value as Record<string, unknown>;
  if (typeof v.id !== 'number' || !Number.isSafeInteger(v.id)) throw new ProtocolError('request `id` must be an integer');
  if (typeof v.method !== 'string' || v.method.length === 0 || v.method.length > 64)
    throw new ProtocolError('request `method` must be a non-empty string');
  const params = v.params ?? {};
  if (typeof params !== 'object' || params === null || Array.isArray(params))
    throw new ProtocolError('request `params` must be an object');
  return { id: v.id, method: v.method, params: params as Record<string, unknown> };
}
