/**
 * The unix-socket front of VnetService. Identity is the kernel's (SO_PEERCRED at
 * accept time); nothing in a request body says who the caller is. Bounded: frame
 * size, connections per uid, idle time, one request at a time per connection (pipelined
 * requests wait, in order, up to MAX_QUEUED; then reading stops until they drain), requests
 * served at once per uid (Turns), reply size, and how long a reply may wait for a client that
 * does not read (then the client is dropped; vnetd never waits for a client on its main
 * thread). Bytes a client sends never make vnetd throw; fds a client sends are dropped by the
 * kernel, since libuv reads a non-IPC unix socket with read(), not recvmsg(). Refusals are
 * logged at most once per uid per 10 s, with caller input cut (src/log).
 */
import { chmod, unlink } from 'node:fs/promises';
import net from 'node:net';
import type { Logger } from 'pino';
import { encodeFrame, FrameReader, parseRequest, type Reply, type Request } from '../api/protocol.js';
import type { PeerCred } from '../model.js';
import { cut, errField } from '../log/cut.js';
import type { RateLimiter } from '../log/rate-limit.js';
import { logRefusal, refusalLimiter, type RefusalFields } from '../log/refusals.js';
import { fdOf, getPeerCred, getPeerGroups, trySendFds } from '../sys/libc.js';
import { isRefusal, toVnetError, VnetError } from '../api/errors.js';
import { methodOf, type TapReply } from '../api/methods.js';
import type { VnetService } from './service.js';
import { TapCloser } from './tap-closer.js';
import { Turns } from './turns.js';

export interface ServerOptions {
  service: VnetService;
  log: Logger;
  /** socket path to bind, or an inherited listening fd (socket activation) */
  listen: { path: string } | { fd: number };
  maxConnectionsPerUid?: number;
  idleTimeoutMs?: number;
  /** requests of one uid served at once, across its connections (default 4) */
  turnsPerUid?: number;
  /** how long a reply may wait for a client that does not read before it is dropped (default 3000 ms) */
  sendStallMs?: number;
  /** one refusal log line per uid per window (default: the one every front of vnetd shares) */
  refusals?: RateLimiter<number>;
  /** called when the last open connection closes */
  onQuiet?: () => void;
  /** where vnetd's copies of passed tap fds are closed (default: a closer of its own) */
  closer?: TapCloser;
}

interface Conn {
  socket: net.Socket;
  fd: number;
  cred: PeerCred;
}

export class Server {
  private server?: net.Server;
  private readonly perUid = new Map<number, number>();
  private readonly conns = new Set<net.Socket>();
  private readonly turns: Turns;
  private readonly stallMs: number;
  private readonly refusals: RateLimiter<number>;
  /** vnetd's copies of tap fds, closed off the main thread */
  private readonly closer: TapCloser;

  constructor(private readonly opts: ServerOptions) {
    this.closer = opts.closer ?? new TapCloser();
    this.turns = new Turns(opts.turnsPerUid ?? 4);
    this.stallMs = opts.sendStallMs ?? 3000;
    this.refusals = opts.refusals ?? refusalLimiter();
  }

  /** connections now open */
  get connections(): number {
    return this.conns.size;
  }

  async start(): Promise<void> {
    const server = net.createServer({ allowHalfOpen: false }, (socket) => this.accept(socket));
    this.server = server;
    server.on('error', (err) => this.opts.log.error({ err }, 'socket server error'));
    const l = this.opts.listen;
    if ('fd' in l) {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ fd: l.fd }, () => resolve());
      });
    } else {
      await unlink(l.path).catch(() => undefined);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(l.path, () => resolve());
      });
      // Anyone may connect: authorisation is per request, by peer credentials.
      await chmod(l.path, 0o666);
    }
  }

  async close(): Promise<void> {
    for (const s of this.conns) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private accept(socket: net.Socket): void {
    let fd: number;
    let cred: PeerCred;
    try {
      fd = fdOf(socket);
      cred = { ...getPeerCred(fd), groups: getPeerGroups(fd) };
    } catch (err) {
      this.opts.log.warn({ err: errField(err) }, 'could not read peer credentials; closing connection');
      socket.destroy();
      return;
    }
    socket.on('error', () => socket.destroy());
    const max = this.opts.maxConnectionsPerUid ?? 32;
    const count = this.perUid.get(cred.uid) ?? 0;
    if (count >= max && cred.uid !== 0) {
      const message = `uid ${cred.uid} already has ${count} connections open (limit ${max})`;
      this.refused(cred, { code: 'EUSERS', reason: message }, 'connection refused');
      refuse(socket, { code: 'EUSERS', message }, REFUSED_LINGER_MS);
      return;
    }
    this.perUid.set(cred.uid, count + 1);
    this.conns.add(socket);
    const conn: Conn = { socket, fd, cred };
    const reader = new FrameReader();
    const queue: Array<{ req: Request } | { fatal: string }> = [];
    let reading = true;
    let busy = false;

    // Idle: no request completed for idleMs while none is being handled. Bytes that do
    // not complete a frame do not count, so trickling half a frame does not keep a
    // connection open; a reply the client does not read does not either.
    const idleMs = this.opts.idleTimeoutMs ?? 30_000;
    let idle: NodeJS.Timeout | undefined;
    const armIdle = () => {
      clearTimeout(idle);
      idle = setTimeout(() => socket.destroy(), idleMs);
    };
    armIdle();

    socket.on('close', () => {
      clearTimeout(idle);
      queue.length = 0;
      this.conns.delete(socket);
      if (this.conns.size === 0) this.opts.onQuiet?.();
      const n = (this.perUid.get(cred.uid) ?? 1) - 1;
      if (n <= 0) this.perUid.delete(cred.uid);
      else this.perUid.set(cred.uid, n);
    });

    const pump = async () => {
      if (busy) return;
      busy = true;
      try {
        while (queue.length > 0 && !socket.destroyed) {
          const item = queue.shift()!;
          if (reading && queue.length < MAX_QUEUED) socket.resume();
          if ('fatal' in item) {
            clearTimeout(idle);
            this.refused(cred, { code: 'EPROTO', reason: item.fatal }, 'request refused');
            refuse(socket, { code: 'EPROTO', message: item.fatal }, Math.min(idleMs, REFUSED_LINGER_MS));
            break;
          }
          clearTimeout(idle);
          // the turn covers the reply too: a uid whose clients do not read waits on itself
          await this.turns.run(cred.uid, async () => {
            if (socket.destroyed) return; // gone while it waited for its turn
            const { reply, fd: passFd } = await this.run(conn, item.req);
            if (!socket.destroyed) armIdle();
            await this.send(conn, reply, passFd);
          });
        }
      } catch (err) {
        this.opts.log.error({ err: errField(err), uid: cred.uid, pid: cred.pid }, 'connection failed; closing it');
        socket.destroy();
      } finally {
        busy = false;
      }
    };

    socket.on('data', (chunk: Buffer) => {
      if (!reading) return;
      // answer what came before a bad frame, then the error, then close
      const { frames, error } = reader.read(chunk);
      let fatal = error?.message;
      for (const f of frames) {
        try {
          queue.push({ req: parseRequest(f) });
        } catch (err) {
          fatal = err instanceof Error ? err.message : String(err);
          break;
        }
      }
      if (fatal !== undefined) {
        reading = false;
        socket.pause();
        queue.push({ fatal });
      }
      // Pipelined requests are served in order; past MAX_QUEUED, stop reading until they drain.
      if (queue.length >= MAX_QUEUED) socket.pause();
      void pump();
    });
  }

  /** Run one request (a method of the API table); never throws. An fd in the result is the caller's to send or close. */
  private async run(conn: Conn, req: Request): Promise<{ reply: Reply; fd?: number }> {
    const method = methodOf(req.method);
    try {
      if (!method) throw new VnetError('ENOSYS', `unknown method ${JSON.stringify(req.method)}`);
      const params = method.params(req.params);
      // this uid's earlier taps that its clients closed are gone first (tap-closer.ts)
      if (method.passesFd) await this.closer.settled(conn.cred.uid);
      const result = await method.run(this.opts.service, params, conn.cred);
      if (method.passesFd) {
        const { fd, ...rest } = result as TapReply;
        return { reply: { id: req.id, ok: true, result: rest }, fd };
      }
      return { reply: { id: req.id, ok: true, result } };
    } catch (raw) {
      const err = toVnetError(raw);
      if (!(raw instanceof VnetError))
        this.opts.log.error({ err: errField(raw), method: cut(req.method), uid: conn.cred.uid, pid: conn.cred.pid }, 'request failed');
      else if (isRefusal(err.code)) this.refused(conn.cred, { method: req.method, code: err.code, reason: err.message }, 'request refused');
      return { reply: { id: req.id, ok: false, error: { code: err.code, message: err.message } } };
    }
  }

  /** A refusal, or a client dropped: logged once per uid per window at most (src/log/refusals.ts). */
  private refused(cred: PeerCred, fields: RefusalFields, msg: string): void {
    logRefusal(this.opts.log, this.refusals, cred.uid, { pid: cred.pid, ...fields }, msg);
  }

  /** Drop a client that does not take its replies (or cannot be sent its tap). */
  private drop(conn: Conn, reason: string): void {
    if (conn.socket.destroyed) return;
    this.refused(conn.cred, { code: 'ETIMEDOUT', reason }, 'client dropped');
    conn.socket.destroy();
  }

  /** Write a reply (with its fd, if any); vnetd's copy of the fd is closed whatever happens. */
  private async send(conn: Conn, reply: Reply, fd: number | undefined): Promise<void> {
    const frame = replyFrame(reply);
    if (fd === undefined) return this.write(conn, frame);
    try {
      await this.sendWithFd(conn, frame, fd);
    } finally {
      // off the main thread: this close may be the tap's last reference (tap-closer.ts)
      this.closer.close(fd, conn.cred.uid);
    }
  }

  /**
   * Write through libuv, which never blocks: a reply the client leaves unread waits in libuv.
   * One still waiting after stallMs means a client that does not read: it is dropped.
   */
  private write(conn: Conn, frame: Buffer): Promise<void> {
    const { socket } = conn;
    if (socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        socket.off('close', done);
        resolve();
      };
      const timer = setTimeout(() => this.drop(conn, `the client left a reply unread for ${this.stallMs} ms`), this.stallMs);
      socket.once('close', done);
      socket.write(frame, done);
    });
  }

  /**
   * Send a reply with the tap fd on its first byte, straight on the socket's fd (libuv has
   * nothing queued: every write before this one has completed). sendmsg never waits: while the
   * client's buffer is full it is tried again on a timer, 1, 2, 4 ... 50 ms apart, and a client
   * still full after stallMs is dropped. The caller closes vnetd's copy of the fd.
   */
  private async sendWithFd(conn: Conn, frame: Buffer, fd: number): Promise<void> {
    const deadline = performance.now() + this.stallMs;
    let pause = 1;
    for (;;) {
      // checked in the same tick as the sendmsg: a closed socket's fd number may already be reused
      if (conn.socket.destroyed || !sameFd(conn)) return;
      let sent: number;
      try {
        sent = trySendFds(conn.fd, frame, [fd]);
      } catch (err) {
        // EPIPE, ECONNRESET: the client went away
        const errno = (err as { errno?: string }).errno ?? 'EIO';
        this.refused(conn.cred, { code: errno, reason: `could not pass the tap: ${(err as Error).message}` }, 'client dropped');
        conn.socket.destroy();
        return;
      }
      if (sent >= 0) {
        if (sent < frame.length) await this.write(conn, frame.subarray(sent));
        return;
      }
      if (performance.now() >= deadline) {
        this.drop(conn, `the client's buffer stayed full for ${this.stallMs} ms`);
        return;
      }
      await new Promise((r) => setTimeout(r, pause));
      pause = Math.min(pause * 2, 50);
    }
  }
}

/** The socket still has the fd it had at accept time. */
function sameFd(conn: Conn): boolean {
  try {
    return fdOf(conn.socket) === conn.fd;
  } catch {
    return false;
  }
}

/** How long a refused connection is kept half-closed so that its client can read why. */
const REFUSED_LINGER_MS = 1000;

/**
 * Send one error reply and half-close; discard what the client still sends (closing with
 * unread input would make its writes fail with EPIPE and lose the reply) until it closes,
 * or for `lingerMs` at most.
 */
function refuse(socket: net.Socket, error: { code: string; message: string }, lingerMs: number): void {
  socket.removeAllListeners('data');
  socket.on('data', () => undefined);
  const timer = setTimeout(() => socket.destroy(), lingerMs);
  socket.once('close', () => clearTimeout(timer));
  socket.end(replyFrame({ id: 0, ok: false, error }));
  socket.resume();
}

/** Requests parsed and waiting on one connection before vnetd stops reading from it. */
const MAX_QUEUED = 16;
/** Error messages often quote the caller's input; past this many characters they are cut. */
const MAX_MESSAGE = 1024;

/**
 * Encode a reply, never throwing: an error message is cut to MAX_MESSAGE characters, and a
 * reply too big for one frame becomes an EMSGSIZE error (a request can make vnetd quote up
 * to MAX_FRAME bytes of itself back, and JSON escaping can more than double that).
 */
function replyFrame(reply: Reply): Buffer {
  let r = reply;
  if (!r.ok && r.error.message.length > MAX_MESSAGE) {
    const more = r.error.message.length - MAX_MESSAGE;
    r = { ...r, error: { code: r.error.code, message: `${r.error.message.slice(0, MAX_MESSAGE)}... (${more} more characters)` } };
  }
  try {
    return encodeFrame(r);
  } catch (err) {
    const message = `the reply does not fit in one frame: ${err instanceof Error ? err.message : String(err)}`;
    return encodeFrame({ id: r.id, ok: false, error: { code: 'EMSGSIZE', message } });
  }
}
