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
  ) {
    super(message);
  }
}

export function encodeFrame(value: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(value), 'utf8');
  if (body.length > MAX_FRAME) throw new ProtocolError(`frame of ${body.length} bytes exceeds ${MAX_FRAME}`);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length, 0);
  return Buffer.concat([head, body]);
}

/**
 * Incremental frame reader. push() bytes as they arrive; it returns the complete
 * frames' parsed JSON values. Throws ProtocolError on a bad length or bad JSON;
 * the caller then replies with an error and closes the connection.
 */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): unknown[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: unknown[] = [];
    for (;;) {
      if (this.buf.length < 4) break;
      const len = this.buf.readUInt32BE(0);
      if (len === 0 || len > MAX_FRAME) throw new ProtocolError(`frame length ${len} is outside 1..${MAX_FRAME}`);
      if (this.buf.length < 4 + len) break;
      const body = this.buf.subarray(4, 4 + len);
      this.buf = this.buf.subarray(4 + len);
      const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
      let str: string;
      try {
        str = text.decode(body);
      } catch {
        throw new ProtocolError('frame is not valid UTF-8');
      }
      try {
        out.push(JSON.parse(str));
      } catch {
        throw new ProtocolError('frame is not valid JSON');
      }
    }
    return out;
  }

  /** bytes held waiting for the rest of a frame */
  get pending(): number {
    return this.buf.length;
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
