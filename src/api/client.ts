/** A client of vnetd's socket, used by the CLI and tests: typed by the API table. */
import net from 'node:net';
import { isErrorCode, VnetError } from './errors.js';
import type { MethodName, ParamsOf, ResultOf } from './methods.js';
import { encodeFrame, FrameReader, type Reply } from './protocol.js';

/** Errors of a client are VnetErrors: the server's code, or ENOTRUNNING / ETIMEDOUT / ECONNRESET / EPROTO of its own. */
export { VnetError as ClientError };

/** A failure to reach vnetd at all: its reason kept, always ENOTRUNNING (the CLI's exit 6). */
function unreachable(socketPath: string, err: NodeJS.ErrnoException): VnetError {
  const code = err.code ?? 'EIO';
  const why = code === 'ENOENT' ? `no socket at ${socketPath}` : code === 'ECONNREFUSED' ? `nothing listens on ${socketPath}` : `cannot connect to ${socketPath}: ${err.message}`;
  return new VnetError('ENOTRUNNING', `vnetd is not running (${why})`, { cause: err });
}

function fromReply(code: string, message: string): VnetError {
  return new VnetError(isErrorCode(code) ? code : 'EIO', message);
}

/** Send one request and wait for its reply. Rejects with a VnetError on an error reply. */
export function call<M extends MethodName>(socketPath: string, method: M, params?: Partial<ParamsOf<M>>, timeoutMs?: number): Promise<ResultOf<M>>;
export function call(socketPath: string, method: string, params?: Record<string, unknown>, timeoutMs?: number): Promise<unknown>;
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
    sock.setTimeout(timeoutMs, () => done(new VnetError('ETIMEDOUT', `vnetd did not answer within ${timeoutMs} ms`)));
    sock.on('connect', () => sock.write(encodeFrame({ id: 1, method, params })));
    let connected = false;
    sock.on('connect', () => (connected = true));
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected) done(unreachable(socketPath, err));
      else done(new VnetError('ECONNRESET', `lost vnetd at ${socketPath}: ${err.message}`, { cause: err }));
    });
    sock.on('data', (chunk: Buffer) => {
      try {
        for (const frame of reader.push(chunk)) {
          const reply = asReply(frame);
          if (reply.ok) done(undefined, reply.result);
          else done(fromReply(reply.error.code, reply.error.message));
        }
      } catch (err) {
        if (err instanceof VnetError) done(err);
        else done(new VnetError('EPROTO', `vnetd sent a malformed reply: ${(err as Error).message}`, { cause: err }));
      }
    });
    sock.on('close', () => done(new VnetError('ECONNRESET', 'vnetd closed the connection without answering')));
  });
}

/** Check the shape of a reply frame; throws VnetError(EPROTO) naming what is wrong. */
function asReply(frame: unknown): Reply {
  const bad = (what: string) => new VnetError('EPROTO', `vnetd sent a malformed reply: ${what}`);
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
  private failed: VnetError | undefined;
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
          if (!p || reply.id !== p.id) throw new VnetError('EPROTO', `vnetd sent a malformed reply: unexpected id ${String(reply.id)}`);
          this.pending = undefined;
          if (reply.ok) p.resolve(reply.result);
          else p.reject(fromReply(reply.error.code, reply.error.message));
        }
      } catch (err) {
        this.fail(err instanceof VnetError ? err : new VnetError('EPROTO', `vnetd sent a malformed reply: ${(err as Error).message}`, { cause: err }));
      }
    });
    sock.on('error', (err: NodeJS.ErrnoException) => this.fail(new VnetError('ECONNRESET', `lost vnetd: ${err.message}`, { cause: err })));
    sock.on('close', () => this.fail(new VnetError('ECONNRESET', 'vnetd closed the connection without answering')));
    sock.setTimeout(timeoutMs, () => this.fail(new VnetError('ETIMEDOUT', `vnetd did not answer within ${timeoutMs} ms`)));
  }

  static open(socketPath: string, timeoutMs = 60_000): Promise<Session> {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection(socketPath);
      sock.once('connect', () => {
        sock.removeAllListeners('error');
        resolve(new Session(sock, timeoutMs));
      });
      sock.once('error', (err: NodeJS.ErrnoException) => reject(unreachable(socketPath, err)));
    });
  }

  /** One request; the previous one must have been answered. */
  call<M extends MethodName>(method: M, params?: Partial<ParamsOf<M>>): Promise<ResultOf<M>>;
  call(method: string, params?: Record<string, unknown>): Promise<unknown>;
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
    this.failed ??= new VnetError('ECONNRESET', 'the session is closed');
    this.sock.destroy();
  }

  private fail(err: VnetError): void {
    this.failed ??= err;
    this.sock.destroy();
    const p = this.pending;
    this.pending = undefined;
    p?.reject(err);
  }
}
