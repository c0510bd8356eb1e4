/** A client of vnetd's socket, used by the CLI and tests. */
import net from 'node:net';
import { encodeFrame, FrameReader, type Reply } from './protocol.js';

export class ClientError extends Error {
  override name = 'ClientError';
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Send one request and wait for its reply. Rejects with ClientError(code) on an error reply. */
export function call(socketPath: string, method: string, params: Record<string, unknown> = {}, timeoutMs = 60_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath);
    const reader = new FrameReader();
    let settled = false;
    const done = (err: Error | undefined, value?: unknown) => {
      if (settled) return;
      settled = true;
      sock.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    sock.setTimeout(timeoutMs, () => done(new ClientError('ETIMEDOUT', `vnetd did not answer within ${timeoutMs} ms`)));
    sock.on('connect', () => sock.write(encodeFrame({ id: 1, method, params })));
    sock.on('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? 'EIO';
      if (code === 'ENOENT' || code === 'ECONNREFUSED') {
        const why = code === 'ENOENT' ? `no socket at ${socketPath}` : `nothing listens on ${socketPath}`;
        done(new ClientError('ENOTRUNNING', `vnetd is not running (${why})`, { cause: err }));
      } else done(new ClientError(code, `cannot talk to vnetd at ${socketPath}: ${err.message}`, { cause: err }));
    });
    sock.on('data', (chunk: Buffer) => {
      try {
        for (const frame of reader.push(chunk)) {
          const reply = asReply(frame);
          if (reply.ok) done(undefined, reply.result);
          else done(new ClientError(reply.error.code, reply.error.message));
        }
      } catch (err) {
        if (err instanceof ClientError) done(err);
        else done(new ClientError('EPROTO', `vnetd sent a malformed reply: ${(err as Error).message}`, { cause: err }));
      }
    });
    sock.on('close', () => done(new ClientError('ECONNRESET', 'vnetd closed the connection without answering')));
  });
}

/** Check the shape of a reply frame; throws ClientError(EPROTO) naming what is wrong. */
function asReply(frame: unknown): Reply {
  const bad = (what: string) => new ClientError('EPROTO', `vnetd sent a malformed reply: ${what}`);
  if (typeof frame !== 'object' || frame === null || Array.isArray(frame)) throw bad('not a JSON object');
  const r = frame as Record<string, unknown>;
  if (r.ok === true) return r as Reply;
  if (r.ok !== false) throw bad('`ok` is neither true nor false');
  const e = r.error as Record<string, unknown> | null | undefined;
  if (typeof e !== 'object' || e === null || typeof e.code !== 'string' || typeof e.message !== 'string')
    throw bad('`error` lacks a string `code` and `message`');
  return r as Reply;
}

/**
 * One connection for several requests in turn (following pages of leases, say): saves a
 * connect and vnetd's per-connection checks on each. Errors as call(); close() when done.
 */
export class Session {
  private readonly reader = new FrameReader();
  private pending: { id: number; resolve: (v: unknown) => void; reject: (e: Error) => void } | undefined;
  private failed: ClientError | undefined;
  private nextId = 1;

  private constructor(
    private readonly sock: net.Socket,
    private readonly timeoutMs: number,
  ) {
    sock.on('data', (chunk: Buffer) => {
      try {
        for (const frame of this.reader.push(chunk)) {
          const reply = asReply(frame);
          const p = this.pending;
          if (!p || reply.id !== p.id) throw new ClientError('EPROTO', `vnetd sent a malformed reply: unexpected id ${String(reply.id)}`);
          this.pending = undefined;
          if (reply.ok) p.resolve(reply.result);
          else p.reject(new ClientError(reply.error.code, reply.error.message));
        }
      } catch (err) {
        this.fail(err instanceof ClientError ? err : new ClientError('EPROTO', `vnetd sent a malformed reply: ${(err as Error).message}`, { cause: err }));
      }
    });
    sock.on('error', (err: NodeJS.ErrnoException) => this.fail(new ClientError(err.code ?? 'EIO', `cannot talk to vnetd: ${err.message}`, { cause: err })));
    sock.on('close', () => this.fail(new ClientError('ECONNRESET', 'vnetd closed the connection without answering')));
    sock.setTimeout(timeoutMs, () => this.fail(new ClientError('ETIMEDOUT', `vnetd did not answer within ${timeoutMs} ms`)));
  }

  static open(socketPath: string, timeoutMs = 60_000): Promise<Session> {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection(socketPath);
      sock.once('connect', () => {
        sock.removeAllListeners('error');
        resolve(new Session(sock, timeoutMs));
      });
      sock.once('error', (err: NodeJS.ErrnoException) => {
        const code = err.code ?? 'EIO';
        if (code === 'ENOENT' || code === 'ECONNREFUSED') {
          const why = code === 'ENOENT' ? `no socket at ${socketPath}` : `nothing listens on ${socketPath}`;
          reject(new ClientError('ENOTRUNNING', `vnetd is not running (${why})`, { cause: err }));
        } else reject(new ClientError(code, `cannot talk to vnetd at ${socketPath}: ${err.message}`, { cause: err }));
      });
    });
  }

  /** One request; the previous one must have been answered. */
  call(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.pending) return Promise.reject(new Error('Session.call: the previous call is still waiting'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending = { id, resolve, reject };
      this.sock.write(encodeFrame({ id, method, params }));
    });
  }

  close(): void {
    this.failed ??= new ClientError('ECONNRESET', 'the session is closed');
    this.sock.destroy();
  }

  private fail(err: ClientError): void {
    this.failed ??= err;
    this.sock.destroy();
    const p = this.pending;
    this.pending = undefined;
    p?.reject(err);
  }
}
