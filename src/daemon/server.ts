/**
 * The unix-socket front of VnetService. Identity is the kernel's (SO_PEERCRED at
 * accept time); nothing in a request body says who the caller is. Bounded: frame
 * size, connections per uid, idle time, one request at a time per connection (pipelined
 * requests wait, in order, up to MAX_QUEUED; then reading stops until they drain), reply
 * size. Bytes a client sends never make vnetd throw; fds a client sends are dropped by the
 * kernel, since libuv reads a non-IPC unix socket with read(), not recvmsg().
 */
import { close } from 'node:fs';
import { chmod, unlink } from 'node:fs/promises';
import net from 'node:net';
import type { Logger } from 'pino';
import { encodeFrame, FrameReader, parseRequest, type Reply, type Request } from '../api/protocol.js';
import type { PeerCred } from '../model.js';
import { closeFd, fdOf, getPeerCred, getPeerGroups, sendFd } from '../sys/libc.js';
import { ServiceError, type VnetService } from './service.js';

export interface ServerOptions {
  service: VnetService;
  log: Logger;
  /** socket path to bind, or an inherited listening fd (socket activation) */
  listen: { path: string } | { fd: number };
  maxConnectionsPerUid?: number;
  idleTimeoutMs?: number;
  /** called when the last open connection closes */
  onQuiet?: () => void;
}

type Handler = (params: Record<string, unknown>, caller: PeerCred, conn: Conn) => Promise<unknown>;

interface Conn {
  socket: net.Socket;
  fd: number;
  cred: PeerCred;
}

function stringParam(params: Record<string, unknown>, key: string): string {
  const v = params[key];
  if (typeof v !== 'string') throw new ServiceError('EINVAL', `parameter \`${key}\` must be a string, got ${v === undefined ? 'nothing' : typeof v}`);
  return v;
}

/** A reply that carries an fd: sent with SCM_RIGHTS, then the fd is closed here. */
class FdResult {
  constructor(
    readonly value: unknown,
    readonly fd: number,
  ) {}
}

export class Server {
  private server?: net.Server;
  private readonly perUid = new Map<number, number>();
  private readonly conns = new Set<net.Socket>();

  constructor(private readonly opts: ServerOptions) {}

  /** connections now open */
  get connections(): number {
    return this.conns.size;
  }


  private readonly handlers: Record<string, Handler> = {
    ping: async () => ({ pong: true, pid: process.pid }),
    list: async () => this.opts.service.list(),
    status: async (p) => this.opts.service.status(stringParam(p, 'name')),
    up: async (p, c) => this.opts.service.up(stringParam(p, 'name'), c),
    down: async (p, c) => this.opts.service.down(stringParam(p, 'name'), c, { force: p.force === true }),
    leases: async (p) => this.opts.service.leases(stringParam(p, 'name'), { after: p.after, limit: p.limit }),
    whoami: async (_p, c) => c,
    tap: async (p, c) => {
      const vnetHdr = p.vnetHdr === undefined ? false : p.vnetHdr;
      if (typeof vnetHdr !== 'boolean') throw new ServiceError('EINVAL', 'parameter `vnetHdr` must be true or false');
      const r = await this.opts.service.tap(stringParam(p, 'bridge'), { vnetHdr }, c);
      return new FdResult({ tap: r.name }, r.fd);
    },
  };

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
      this.opts.log.warn({ err }, 'could not read peer credentials; closing connection');
      socket.destroy();
      return;
    }
    socket.on('error', () => socket.destroy());
    const max = this.opts.maxConnectionsPerUid ?? 32;
    const count = this.perUid.get(cred.uid) ?? 0;
    if (count >= max && cred.uid !== 0) {
      refuse(socket, { code: 'EUSERS', message: `uid ${cred.uid} already has ${count} connections open (limit ${max})` }, REFUSED_LINGER_MS);
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
            refuse(socket, { code: 'EPROTO', message: item.fatal }, Math.min(idleMs, REFUSED_LINGER_MS));
            break;
          }
          clearTimeout(idle);
          const { reply, fd: passFd } = await this.run(conn, item.req);
          if (!socket.destroyed) armIdle();
          await this.send(conn, reply, passFd);
        }
      } catch (err) {
        this.opts.log.error({ err, uid: cred.uid, pid: cred.pid }, 'connection failed; closing it');
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

  /** Run one request; never throws. An fd in the result is the caller's to send or close. */
  private async run(conn: Conn, req: Request): Promise<{ reply: Reply; fd?: number }> {
    const handler = Object.hasOwn(this.handlers, req.method) ? this.handlers[req.method] : undefined;
    try {
      if (!handler) throw new ServiceError('ENOSYS', `unknown method ${JSON.stringify(req.method)}`);
      const result = await handler(req.params, conn.cred, conn);
      if (result instanceof FdResult) return { reply: { id: req.id, ok: true, result: result.value }, fd: result.fd };
      return { reply: { id: req.id, ok: true, result } };
    } catch (err) {
      const code = err instanceof ServiceError ? err.code : 'EIO';
      const message = err instanceof Error ? err.message : String(err);
      if (!(err instanceof ServiceError)) this.opts.log.error({ err, method: req.method }, 'request failed');
      return { reply: { id: req.id, ok: false, error: { code, message } } };
    }
  }

  /** Write a reply (with its fd, if any); the fd is closed here whatever happens. */
  private async send(conn: Conn, reply: Reply, fd: number | undefined): Promise<void> {
    if (conn.socket.destroyed) {
      if (fd !== undefined) closeFd(fd);
      return;
    }
    const frame = replyFrame(reply);
    if (fd === undefined) {
      await new Promise<void>((resolve) => conn.socket.write(frame, () => resolve()));
      return;
    }
    try {
      // Our writes are strictly sequential (we awaited the previous one), so nothing is
      // queued in libuv: the fd-carrying frame goes straight out on the socket's fd.
      sendFd(conn.fd, frame, fd);
    } catch (err) {
      this.opts.log.warn({ err }, 'could not pass the tap fd to the caller');
    } finally {
      // on the thread pool: if ours is the last reference, the kernel tears the tap down
      // inside close(), which takes tens of milliseconds
      close(fd, () => undefined);
    }
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
    const cut = r.error.message.length - MAX_MESSAGE;
    r = { ...r, error: { code: r.error.code, message: `${r.error.message.slice(0, MAX_MESSAGE)}... (${cut} more characters)` } };
  }
  try {
    return encodeFrame(r);
  } catch (err) {
    const message = `the reply does not fit in one frame: ${err instanceof Error ? err.message : String(err)}`;
    return encodeFrame({ id: r.id, ok: false, error: { code: 'EMSGSIZE', message } });
  }
}
