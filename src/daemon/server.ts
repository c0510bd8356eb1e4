/**
 * The unix-socket front of VnetService. Identity is the kernel's (SO_PEERCRED at
 * accept time); nothing in a request body says who the caller is. Bounded: frame
 * size, connections per uid, idle time, one request at a time per connection.
 */
import { chmod, unlink } from 'node:fs/promises';
import net from 'node:net';
import type { Logger } from 'pino';
import { encodeFrame, FrameReader, parseRequest, ProtocolError, type Reply, type Request } from '../api/protocol.js';
import type { PeerCred } from '../model.js';
import { closeFd, getPeerCred, sendFd } from '../sys/libc.js';
import { ServiceError, type VnetService } from './service.js';

export interface ServerOptions {
  service: VnetService;
  log: Logger;
  /** socket path to bind, or an inherited listening fd (socket activation) */
  listen: { path: string } | { fd: number };
  maxConnectionsPerUid?: number;
  idleTimeoutMs?: number;
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
  private lastActivity = Date.now();

  constructor(private readonly opts: ServerOptions) {}

  /** connections now open */
  get connections(): number {
    return this.conns.size;
  }

  /** ms since a connection last opened or closed */
  get quietMs(): number {
    return this.conns.size > 0 ? 0 : Date.now() - this.lastActivity;
  }

  private readonly handlers: Record<string, Handler> = {
    ping: async () => ({ pong: true, pid: process.pid }),
    list: async () => this.opts.service.list(),
    status: async (p) => this.opts.service.status(stringParam(p, 'name')),
    up: async (p, c) => this.opts.service.up(stringParam(p, 'name'), c),
    down: async (p, c) => this.opts.service.down(stringParam(p, 'name'), c, { force: p.force === true }),
    leases: async (p) => this.opts.service.leases(stringParam(p, 'name')),
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
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    let cred: PeerCred;
    try {
      if (typeof fd !== 'number' || fd < 0) throw new Error('no fd on accepted socket');
      cred = getPeerCred(fd);
    } catch (err) {
      this.opts.log.warn({ err }, 'could not read peer credentials; closing connection');
      socket.destroy();
      return;
    }
    const max = this.opts.maxConnectionsPerUid ?? 32;
    const count = this.perUid.get(cred.uid) ?? 0;
    if (count >= max && cred.uid !== 0) {
      socket.end(encodeFrame({ id: 0, ok: false, error: { code: 'EUSERS', message: `uid ${cred.uid} already has ${count} connections open (limit ${max})` } }));
      socket.destroySoon();
      return;
    }
    this.perUid.set(cred.uid, count + 1);
    this.conns.add(socket);
    this.lastActivity = Date.now();
    const conn: Conn = { socket, fd, cred };
    const reader = new FrameReader();
    const queue: Request[] = [];
    let busy = false;
    socket.setTimeout(this.opts.idleTimeoutMs ?? 30_000, () => socket.destroy());
    socket.on('close', () => {
      this.conns.delete(socket);
      this.lastActivity = Date.now();
      const n = (this.perUid.get(cred.uid) ?? 1) - 1;
      if (n <= 0) this.perUid.delete(cred.uid);
      else this.perUid.set(cred.uid, n);
    });
    socket.on('error', () => socket.destroy());

    const pump = async () => {
      if (busy) return;
      busy = true;
      while (queue.length && !socket.destroyed) {
        const req = queue.shift()!;
        socket.pause();
        await this.handle(conn, req);
        socket.resume();
      }
      busy = false;
    };

    socket.on('data', (chunk: Buffer) => {
      let frames: unknown[];
      try {
        frames = reader.push(chunk);
        for (const f of frames) queue.push(parseRequest(f));
        if (queue.length > 16) throw new ProtocolError('too many pipelined requests');
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        socket.end(encodeFrame({ id: 0, ok: false, error: { code: 'EPROTO', message } }));
        socket.destroySoon();
        return;
      }
      void pump();
    });
  }

  private async handle(conn: Conn, req: Request): Promise<void> {
    const handler = Object.hasOwn(this.handlers, req.method) ? this.handlers[req.method] : undefined;
    let reply: Reply;
    let fd: number | undefined;
    try {
      if (!handler) throw new ServiceError('ENOSYS', `unknown method ${JSON.stringify(req.method)}`);
      const result = await handler(req.params, conn.cred, conn);
      if (result instanceof FdResult) {
        fd = result.fd;
        reply = { id: req.id, ok: true, result: result.value };
      } else {
        reply = { id: req.id, ok: true, result };
      }
    } catch (err) {
      const code = err instanceof ServiceError ? err.code : 'EIO';
      const message = err instanceof Error ? err.message : String(err);
      if (!(err instanceof ServiceError)) this.opts.log.error({ err, method: req.method }, 'request failed');
      reply = { id: req.id, ok: false, error: { code, message } };
    }
    if (conn.socket.destroyed) {
      if (fd !== undefined) closeFd(fd);
      return;
    }
    if (fd === undefined) {
      await new Promise<void>((resolve) => conn.socket.write(encodeFrame(reply), () => resolve()));
      return;
    }
    try {
      // Our writes are strictly sequential (we awaited the previous one), so nothing is
      // queued in libuv: the fd-carrying frame goes straight out on the socket's fd.
      sendFd(conn.fd, encodeFrame(reply), fd);
    } catch (err) {
      this.opts.log.warn({ err }, 'could not pass the tap fd to the caller');
    } finally {
      closeFd(fd);
    }
  }
}
