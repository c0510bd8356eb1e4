/**
 * Hostile clients against the real vnetd (threats.md items 3, 9, 19): bad frames, bad requests,
 * fds sent to the daemon, silent and stalling clients, connection floods, claimed identities,
 * and random bytes. After every test vnetd still answers, its open fds are back to where they
 * started and its memory has stayed bounded.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import fc from 'fast-check';
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { encodeFrame, FrameReader, MAX_FRAME } from '../../src/api/protocol.js';
import { fdOf, sendFd } from '../../src/sys/libc.js';
import { cleanupAll, createNetns, tempDir, trackPid, untrackPid, waitFor } from '../support/netns.js';
import { Vnetd, vnetEnv } from '../support/vnetd.js';

const IDLE_MS = 500;
const NOBODY = 65534;
const OTHER_UID = 23456;
/** how far vnetd's resident memory may grow over its start-up size during the suite */
const RSS_SLACK_KIB = 64 * 1024;

let vnetd: Vnetd;
let pid: number;
let baseFds: number;
let baseRssKiB: number;
let logMark = 0;

function fds(): string[] {
  const dir = `/proc/${pid}/fd`;
  return readdirSync(dir).map((fd) => {
    try {
      return readlinkSync(`${dir}/${fd}`);
    } catch {
      return '';
    }
  });
}

function rssKiB(): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1]);
}


function frameOf(body: Buffer | string): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  const head = Buffer.alloc(4);
  head.writeUInt32BE(b.length);
  return Buffer.concat([head, b]);
}

function header(len: number): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(len);
  return head;
}

interface Reply {
  id: number;
  ok: boolean;
  result?: unknown;
  error?: { code: string; message: string };
}

interface Exchange {
  replies: Reply[];
  /** vnetd closed the connection (rather than our timeout ending the wait) */
  closedByPeer: boolean;
  /** ms from connect to vnetd closing */
  ms: number;
  /** largest frame received, in bytes */
  biggest: number;
}

/**
 * Connect as root, send `parts` (with `gapMs` between them), optionally half-close, and collect
 * replies until vnetd closes, `want` replies arrived, or `waitMs` passed.
 */
function exchange(parts: Buffer[], opts: { end?: boolean; want?: number; waitMs?: number; gapMs?: number } = {}): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(vnetd.socket);
    const reader = new FrameReader();
    const replies: Reply[] = [];
    const t0 = Date.now();
    let biggest = 0;
    let raw = Buffer.alloc(0);
    let settled = false;
    const finish = (closedByPeer: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ replies, closedByPeer, ms: Date.now() - t0, biggest });
    };
    const timer = setTimeout(() => finish(false), opts.waitMs ?? 5000);
    sock.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' || err.code === 'ECONNRESET' ? undefined : reject(err)));
    sock.on('data', (d: Buffer) => {
      raw = Buffer.concat([raw, d]);
      while (raw.length >= 4 && raw.length >= 4 + raw.readUInt32BE(0)) {
        biggest = Math.max(biggest, raw.readUInt32BE(0));
        raw = raw.subarray(4 + raw.readUInt32BE(0));
      }
      replies.push(...(reader.push(d) as Reply[]));
      if (opts.want !== undefined && replies.length >= opts.want) finish(false);
    });
    sock.on('close', () => finish(true));
    sock.on('connect', async () => {
      for (const [i, p] of parts.entries()) {
        if (i > 0 && opts.gapMs) await sleep(opts.gapMs);
        if (!sock.destroyed) sock.write(p);
      }
      if (opts.end && !sock.destroyed) sock.end();
    });
  });
}

const req = (id: number, method: string, params?: unknown, extra: Record<string, unknown> = {}) =>
  encodeFrame({ id, method, ...(params === undefined ? {} : { params }), ...extra });

/**
 * Run an ES module (only node: built-ins) as `uid` with no groups; it finds the socket in
 * process.env.SOCK and `frame`, `request` and `connect` helpers in scope, and prints one JSON
 * line as its result. It may wait for its stdin to close (`await released`) to hold what it opened.
 */
function asUser(uid: number, body: string, input?: string) {
  const prelude = `
    import net from 'node:net';
    const SOCK = process.env.SOCK;
    const frame = (v) => { const b = Buffer.from(JSON.stringify(v)); const h = Buffer.alloc(4); h.writeUInt32BE(b.length); return Buffer.concat([h, b]); };
    const released = new Promise((r) => { process.stdin.on('data', () => {}); process.stdin.on('end', r); process.stdin.on('close', r); });
    function connect() {
      const s = net.createConnection(SOCK);
      let buf = Buffer.alloc(0); const waiting = []; const got = [];
      s.on('data', (d) => { buf = Buffer.concat([buf, d]);
        while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) { const n = buf.readUInt32BE(0); got.push(JSON.parse(buf.subarray(4, 4 + n).toString())); buf = buf.subarray(4 + n); }
        while (got.length && waiting.length) waiting.shift()(got.shift()); });
      s.on('error', () => {});
      s.on('close', () => { while (waiting.length) waiting.shift()({ closed: true }); });
      s.next = () => new Promise((r) => (got.length ? r(got.shift()) : s.destroyed ? r({ closed: true }) : waiting.push(r)));
      s.ready = new Promise((r, j) => { s.once('connect', r); s.once('error', j); });
      return s;
    }
    async function request(v) { const s = connect(); await s.ready; s.write(frame(v)); const r = await s.next(); s.destroy(); return r; }
  `;
  const proc = execa(
    'setpriv',
    [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', process.execPath, '--input-type=module', '-e', `${prelude}\n${body}`],
    { env: { SOCK: vnetd.socket, PATH: '/usr/bin:/bin' }, extendEnv: false, reject: false, ...(input === undefined ? { stdin: 'pipe' } : { input }), buffer: true },
  );
  const child = proc.pid;
  trackPid(child);
  // once it has exited its pid may be reused: cleanup must not kill that
  void proc.then(() => untrackPid(child));
  return proc;
}

/** its first line of output, as JSON; throws if it exits first or prints nothing within `ms` (a silent vnetd) */
async function firstLine(proc: ReturnType<typeof asUser>, ms = 10_000): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await new Promise((resolve, reject) => {
      let out = '';
      timer = setTimeout(() => reject(new Error(`script gave no result within ${ms} ms: ${out}`)), ms);
      proc.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]!));
      });
      // 'close', not 'exit': by then all of stdout has been read
      proc.on('close', () => reject(new Error(`script exited without a result: ${out}`)));
    });
  } finally {
    clearTimeout(timer);
  }
}

/** Run a script as `uid` to its end and return its last line, as JSON; a script still running after `ms` is killed and this throws. */
async function runAs(uid: number, body: string, ms = 30_000): Promise<unknown> {
  const proc = asUser(uid, body, '');
  const timer = setTimeout(() => proc.kill('SIGKILL'), ms);
  const r = await proc.finally(() => clearTimeout(timer));
  if (r.signal === 'SIGKILL') throw new Error(`script as uid ${uid} was still running after ${ms} ms (vnetd silent?): ${r.stdout}`);
  if (r.exitCode !== 0) throw new Error(`script as uid ${uid} failed (${r.exitCode}): ${r.stderr}`);
  return JSON.parse(String(r.stdout).trim().split('\n').pop()!);
}

beforeAll(async () => {
  const ns = await createNetns('vadv');
  const env = vnetEnv({ VNET_CLIENT_IDLE_MS: String(IDLE_MS), VNET_LOG_LEVEL: 'warn' });
  writeFileSync(path.join(env.VNET_CONFIG_DIR, 'networks', 'lab.toml'), 'bridge = "vnlab0"\naddress = "10.77.0.1/24"\n');
  vnetd = await new Vnetd(ns, env).start();
  pid = vnetd.pid!;
  await sleep(200);
  baseFds = fds().length;
  baseRssKiB = rssKiB();
});

afterAll(async () => {
  await vnetd?.stop();
  await cleanupAll();
});

beforeEach(() => {
  logMark = vnetd.log.length;
});

afterEach(async () => {
  // vnetd is alive and serving, has no more fds than at start, and its memory stayed bounded
  expect(vnetd.alive(), `vnetd died:\n${vnetd.log}`).toBe(true);
  const pong = (await vnetd.call('ping')) as { pong: boolean; pid: number };
  expect(pong).toEqual({ pong: true, pid });
  await waitFor(`vnetd's fds back to ${baseFds}`, () => fds().length <= baseFds, 3000).catch(() => {
    throw new Error(`vnetd holds ${fds().length} fds, ${baseFds} at start: ${fds().join(' ')}`);
  });
  expect(rssKiB()).toBeLessThan(baseRssKiB + RSS_SLACK_KIB);
  // no error logged (nothing threw inside vnetd) during this test
  expect(vnetd.log.slice(logMark)).not.toMatch(/"level":[56]0|Error:/);
});

describe('bad frames', () => {
  it.each([
    ['two bytes of a header', [Buffer.from([0, 0])]],
    ['a header alone', [header(100)]],
    ['half a body', [header(100), Buffer.from('{"id":1,"method":"ping"')]],
    ['one frame and a half', [req(1, 'ping'), header(40), Buffer.from('{"id":2')]],
  ])('%s, then close: dropped quietly, nothing held', async (_what, parts) => {
    const before = fds().length;
    const x = await exchange(parts, { end: true });
    expect(x.closedByPeer).toBe(true);
    expect(x.replies.filter((r) => r.id !== 1)).toEqual([]);
    expect(x.ms).toBeLessThan(IDLE_MS); // closed on our FIN, not by the idle timer
    await waitFor('the connection to be gone', () => fds().length <= before, IDLE_MS / 2);
  });

  it.each([
    ['4 GiB', 0xffffffff],
    ['MAX_FRAME + 1', MAX_FRAME + 1],
    ['zero', 0],
  ])('a length of %s is refused from the header alone (EPROTO, closed)', async (_what, len) => {
    const rss = rssKiB();
    const x = await exchange([header(len), Buffer.alloc(1000, 0x20)]);
    expect(x.closedByPeer).toBe(true);
    expect(x.replies).toEqual([{ id: 0, ok: false, error: { code: 'EPROTO', message: `frame length ${len} is outside 1..${MAX_FRAME}` } }]);
    expect(rssKiB() - rss).toBeLessThan(16 * 1024); // nothing was allocated for the announced size
  });

  it('a frame of exactly MAX_FRAME bytes is read and served', async () => {
    const body = JSON.stringify({ id: 7, method: 'ping' });
    const x = await exchange([frameOf(body.padEnd(MAX_FRAME, ' '))], { want: 1 });
    expect(x.replies).toEqual([{ id: 7, ok: true, result: { pong: true, pid } }]);
  });

  it.each([
    ['invalid UTF-8', frameOf(Buffer.from([0x7b, 0x22, 0x69, 0xff, 0xfe, 0x7d])), 'frame is not valid UTF-8'],
    ['a lone surrogate in UTF-8 (CESU)', frameOf(Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22])), 'frame is not valid UTF-8'],
    ['invalid JSON', frameOf('{"id":1,"method":"ping"'), 'frame is not valid JSON'],
    ['JSON with a trailing comma', frameOf('{"id":1,"method":"ping",}'), 'frame is not valid JSON'],
    ['a JSON array', frameOf('[1,2,3]'), 'request must be a JSON object'],
    ['a JSON string', frameOf('"ping"'), 'request must be a JSON object'],
    ['JSON null', frameOf('null'), 'request must be a JSON object'],
    ['a JSON number', frameOf('42'), 'request must be a JSON object'],
    ['an id that is a string', req(1, 'ping', {}, { id: '1' }), 'request `id` must be an integer'],
    ['an id of 2^53', frameOf(`{"id":9007199254740992,"method":"ping"}`), 'request `id` must be an integer'],
    ['a method that is a number', frameOf('{"id":1,"method":5}'), 'request `method` must be a non-empty string'],
    ['a method of 65 characters', req(1, 'p'.repeat(65)), 'request `method` must be a non-empty string'],
    ['params that are a string', req(1, 'status', 'default'), 'request `params` must be an object'],
    ['params that are an array', req(1, 'status', ['default']), 'request `params` must be an object'],
  ])('%s: EPROTO naming the problem, then closed', async (_what, bytes, message) => {
    const x = await exchange([bytes, req(99, 'ping')]);
    expect(x.closedByPeer).toBe(true);
    expect(x.replies).toEqual([{ id: 0, ok: false, error: { code: 'EPROTO', message } }]);
  });

  it('params nested 30 000 arrays deep are parsed without exhausting the stack, and served', async () => {
    const deep = frameOf(`{"id":1,"method":"ping","params":{"x":${'['.repeat(30000)}${']'.repeat(30000)}}}`);
    const x = await exchange([deep, req(2, 'ping')], { want: 2 });
    expect(x.replies.map((r) => [r.id, r.ok])).toEqual([
      [1, true],
      [2, true],
    ]);
  });

  it('requests before a bad frame are answered, in order, then the error, then the close', async () => {
    const x = await exchange([Buffer.concat([req(1, 'ping'), req(2, 'whoami'), frameOf('{bad'), req(3, 'ping')])]);
    expect(x.closedByPeer).toBe(true);
    expect(x.replies.map((r) => [r.id, r.ok, r.error?.code])).toEqual([
      [1, true, undefined],
      [2, true, undefined],
      [0, false, 'EPROTO'],
    ]);
  });
});

describe('bad requests', () => {
  const methods = ['nope', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__', 'handlers', 'prototype', 'PING', ' ping'];
  it('unknown methods, including Object.prototype names, are ENOSYS and the connection goes on', async () => {
    const x = await exchange([Buffer.concat([...methods.map((m, i) => req(i + 1, m, {})), req(100, 'ping')])], { want: methods.length + 1 });
    expect(x.replies).toEqual([
      ...methods.map((m, i) => ({ id: i + 1, ok: false, error: { code: 'ENOSYS', message: `unknown method ${JSON.stringify(m)}` } })),
      { id: 100, ok: true, result: { pong: true, pid } },
    ]);
  });

  it.each([
    ['status', { name: 123 }, 'EINVAL', 'parameter `name` must be a string, got number'],
    ['status', {}, 'EINVAL', 'parameter `name` must be a string, got nothing'],
    ['status', { name: null }, 'EINVAL', 'parameter `name` must be a string, got object'],
    ['leases', { name: ['lab'] }, 'EINVAL', 'parameter `name` must be a string, got object'],
    ['up', { name: { toString: 'lab' } }, 'EINVAL', 'parameter `name` must be a string, got object'],
    ['tap', { bridge: {} }, 'EINVAL', 'parameter `bridge` must be a string, got object'],
    ['tap', { bridge: 'vnlab0', vnetHdr: 'yes' }, 'EINVAL', 'parameter `vnetHdr` must be true or false'],
    ['tap', { bridge: '../../etc' }, 'EINVAL', 'bridge name "../../etc" may hold only'],
    ['status', { name: '__proto__' }, 'ENOENT', 'no network or bridge named "__proto__"'],
    ['status', { name: 'constructor' }, 'ENOENT', 'no network or bridge named "constructor"'],
    ['status', { __proto__: { name: 'lab' } }, 'EINVAL', 'parameter `name` must be a string, got nothing'],
  ])('%s %j: %s', async (method, params, code, fragment) => {
    // send the params as raw JSON so "__proto__" arrives as an own key, as a hostile client would
    const body = `{"id":5,"method":${JSON.stringify(method)},"params":${rawJson(params)}}`;
    const x = await exchange([frameOf(body), req(6, 'ping')], { want: 2 });
    expect(x.replies[0]).toMatchObject({ id: 5, ok: false, error: { code } });
    expect(x.replies[0]!.error!.message).toContain(fragment);
    expect(x.replies[1]).toMatchObject({ id: 6, ok: true });
  });

  it.each([
    ['tap', 'bridge', 30_000],
    ['status', 'name', 32_000],
    ['up', 'name', 32_000],
  ])('%s with a %s of %i quote marks (its reply would quote it back escaped) is answered, cut, in one frame', async (method, key, n) => {
    // once a crash: the escaped echo of the name outgrew MAX_FRAME and encodeFrame threw in vnetd
    const x = await exchange([req(1, method, { [key]: '"'.repeat(n) }), req(2, 'ping')], { want: 2 });
    expect(x.replies[0]).toMatchObject({ id: 1, ok: false });
    expect(x.replies[0]!.error!.message.length).toBeLessThan(1200);
    expect(x.replies[0]!.error!.message).toMatch(/more characters\)$/);
    expect(x.biggest).toBeLessThanOrEqual(MAX_FRAME);
    expect(x.replies[1]).toMatchObject({ id: 2, ok: true });
  });
});

/** JSON text of a value, keeping an own "__proto__" key (JSON.stringify would too, for own keys). */
function rawJson(v: unknown): string {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return JSON.stringify(v);
  const own = Object.getOwnPropertyNames(v);
  const proto = Object.getPrototypeOf(v) as unknown;
  const entries = own.map((k) => `${JSON.stringify(k)}:${rawJson((v as Record<string, unknown>)[k])}`);
  if (proto !== Object.prototype && proto !== null) entries.push(`"__proto__":${rawJson(proto)}`);
  return `{${entries.join(',')}}`;
}

describe('pipelining and backpressure', () => {
  it('500 pipelined requests in one write are all answered, in order', async () => {
    const n = 500;
    const x = await exchange([Buffer.concat(Array.from({ length: n }, (_, i) => req(i + 1, i % 2 ? 'ping' : 'whoami')))], { want: n });
    expect(x.replies.map((r) => r.id)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(x.replies.every((r) => r.ok)).toBe(true);
    expect(x.replies[0]!.result).toMatchObject({ uid: 0 });
  });

  it('a client that pipelines 40 000 requests and never reads is closed after the idle time; others are served meanwhile', async () => {
    const sock = net.createConnection(vnetd.socket);
    sock.pause();
    sock.on('error', () => undefined);
    const closed = new Promise<number>((resolve) => sock.on('close', () => resolve(Date.now())));
    await new Promise((r) => sock.on('connect', r));
    const t0 = Date.now();
    const rss = rssKiB();
    sock.write(Buffer.concat(Array.from({ length: 40_000 }, (_, i) => req(i, 'ping'))));
    await sleep(100);
    for (let i = 0; i < 5; i++) expect(await vnetd.call('ping')).toMatchObject({ pong: true });
    expect((await closed) - t0).toBeLessThan(IDLE_MS + 3000);
    expect(rssKiB() - rss).toBeLessThan(32 * 1024);
  });
});

describe('idle and stalling clients', () => {
  it('a client that connects and says nothing is closed after VNET_CLIENT_IDLE_MS', async () => {
    const x = await exchange([], { waitMs: IDLE_MS + 3000 });
    expect(x.closedByPeer).toBe(true);
    expect(x.ms).toBeGreaterThanOrEqual(IDLE_MS - 50);
    expect(x.ms).toBeLessThan(IDLE_MS + 1000);
    expect(x.replies).toEqual([]);
  });

  it('a client that sends half a frame and stalls is closed after the idle time', async () => {
    const x = await exchange([header(200), Buffer.from('{"id":1,"method":')], { waitMs: IDLE_MS + 3000 });
    expect(x.closedByPeer).toBe(true);
    expect(x.ms).toBeLessThan(IDLE_MS + 1000);
  });

  it('trickling a frame a byte at a time does not hold the connection open past the idle time', async () => {
    const bytes = req(1, 'status', { name: 'x'.repeat(200) });
    const parts = [...bytes].map((b) => Buffer.from([b]));
    const x = await exchange(parts, { gapMs: 50, waitMs: IDLE_MS + 5000 });
    expect(x.closedByPeer).toBe(true);
    expect(x.replies).toEqual([]);
    expect(x.ms).toBeLessThan(IDLE_MS + 1000); // 200+ bytes at 50 ms each would take > 10 s
  });

  it('a client that keeps asking is not idle: 12 requests 150 ms apart on one connection', async () => {
    const x = await exchange(
      Array.from({ length: 12 }, (_, i) => req(i + 1, 'ping')),
      { gapMs: 150, want: 12, waitMs: 10_000 },
    );
    expect(x.closedByPeer).toBe(false);
    expect(x.replies.map((r) => r.id)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
  });
});

describe('fds sent to vnetd', () => {
  it('SCM_RIGHTS on requests, on half a frame and on garbage: none lands in vnetd; requests are still answered', async () => {
    const marker = path.join(tempDir('vnet-adv-fd-'), 'passed-to-vnetd');
    writeFileSync(marker, 'x');
    const passed = openSync(marker, 'r');
    const socks: net.Socket[] = [];
    const open = async () => {
      const s = net.createConnection(vnetd.socket);
      socks.push(s);
      s.on('error', () => undefined);
      await new Promise((resolve, reject) => {
        s.once('connect', resolve);
        s.once('error', reject);
      });
      return s;
    };
    try {
      // 1: fds riding on well-formed requests
      const sock = await open();
      const reader = new FrameReader();
      const replies: Reply[] = [];
      sock.on('data', (d: Buffer) => replies.push(...(reader.push(d) as Reply[])));
      for (let i = 1; i <= 50; i++) sendFd(fdOf(sock), req(i, 'ping'), passed);
      await waitFor('50 replies', () => replies.length === 50, 5000);
      expect(replies.map((r) => r.id)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
      expect(fds().filter((f) => f === marker)).toEqual([]);
      expect(fds().length).toBeLessThanOrEqual(baseFds + 1);

      // 2: an fd on half a frame, left waiting
      const half = await open();
      sendFd(fdOf(half), header(100), passed);
      await sleep(100);
      expect(fds().filter((f) => f === marker)).toEqual([]);

      // 3: an fd on garbage that vnetd refuses
      const bad = await open();
      let badClosed = false;
      bad.on('close', () => (badClosed = true));
      bad.resume(); // read, so that vnetd's close is seen
      sendFd(fdOf(bad), Buffer.from([0xff, 0xff, 0xff, 0xff]), passed);
      await waitFor('vnetd to close the connection that sent garbage', () => badClosed, 5000);
      expect(fds().filter((f) => f === marker)).toEqual([]);
    } finally {
      for (const s of socks) s.destroy();
      closeSync(passed);
    }
    await waitFor('fds back to baseline', () => fds().length <= baseFds, 5000);
  });
});

describe('other users', () => {
  it('identity comes from the kernel: uid 0 claimed in the body by nobody is still nobody', async () => {
    const out = await runAs(
      NOBODY,
      `
      const claim = { uid: 0, gid: 0, pid: 1, caller: { uid: 0, gid: 0, pid: 1 } };
      const who = await request({ id: 1, method: 'whoami', params: claim, ...claim });
      const up = await request({ id: 2, method: 'up', params: { name: 'lab', ...claim }, ...claim });
      const down = await request({ id: 3, method: 'down', params: { name: 'lab', force: true, ...claim }, ...claim });
      console.log(JSON.stringify({ who, up, down, pid: process.pid }));
    `,
    );
    const { who, up, down } = out as { who: Reply; up: Reply; down: Reply };
    expect(who).toMatchObject({ id: 1, ok: true, result: { uid: NOBODY, gid: NOBODY } });
    expect(up).toMatchObject({ id: 2, ok: false, error: { code: 'EPERM' } });
    expect(up.error!.message).toMatch(/^uid 65534 may not bring up network "lab"/);
    expect(down).toMatchObject({ id: 3, ok: false, error: { code: 'EPERM' } });
    expect(down.error!.message).toMatch(/^uid 65534 may not/);
    expect(((await vnetd.call('status', { name: 'lab' })) as { state: string }).state).toBe('down');
  });

  it('per-uid limit: the 33rd connection of nobody gets EUSERS, while another uid and root are served', async () => {
    const holder = asUser(
      NOBODY,
      `
      // a reply, or { timeout: true } when vnetd stays silent
      const within = (p) => Promise.race([p, new Promise((r) => setTimeout(() => r({ timeout: true }), 5000).unref())]);
      const socks = [];
      for (let i = 0; i < 32; i++) { const s = connect(); await s.ready; s.write(frame({ id: i, method: 'ping' })); socks.push(s); }
      const first = await within(Promise.all(socks.map((s) => s.next())));
      // keep all 32 busy enough not to be idle
      const keep = setInterval(() => socks.forEach((s, i) => { s.write(frame({ id: i, method: 'ping' })); s.next(); }), 100);
      const extra = connect(); await extra.ready;
      const refused = await within(extra.next());
      console.log(JSON.stringify({ served: Array.isArray(first) ? first.filter((r) => r.ok).length : first, refused }));
      await released;
      clearInterval(keep);
      socks.forEach((s) => s.destroy());
    `,
    );
    try {
      const { served, refused } = (await firstLine(holder, 15_000)) as { served: number; refused: Reply };
      expect(served).toBe(32);
      expect(refused).toEqual({ id: 0, ok: false, error: { code: 'EUSERS', message: 'uid 65534 already has 32 connections open (limit 32)' } });

      const other = (await runAs(OTHER_UID, `console.log(JSON.stringify(await request({ id: 1, method: 'whoami' })));`)) as Reply;
      expect(other).toMatchObject({ ok: true, result: { uid: OTHER_UID } });
      expect(await vnetd.call('whoami')).toMatchObject({ uid: 0 });
      // root is never limited: 40 at once
      const many = await Promise.all(Array.from({ length: 40 }, () => vnetd.call('ping')));
      expect(many).toHaveLength(40);
      // nobody is still refused while the 32 are held
      const again = (await runAs(NOBODY, `console.log(JSON.stringify(await request({ id: 1, method: 'ping' })));`)) as Reply;
      expect(again.error?.code).toBe('EUSERS');

      holder.stdin!.end();
      expect((await holder).exitCode).toBe(0);
    } finally {
      // on any failure above: the 32 connections must not outlive this test
      holder.stdin!.end();
      holder.kill('SIGKILL');
      await holder;
    }
    // the count goes back down: nobody is served again
    await waitFor(
      'nobody served again',
      async () => {
        const r = (await runAs(NOBODY, `console.log(JSON.stringify(await request({ id: 1, method: 'ping' })));`)) as Reply;
        return r.ok;
      },
      5000,
    );
  });

  it('a flood of 2 000 connect/ping/close from nobody, 48 at a time: each answered or EUSERS; memory and fds bounded', async () => {
    let peak = rssKiB();
    const sampler = setInterval(() => (peak = Math.max(peak, rssKiB())), 20);
    const out = (await runAs(
      NOBODY,
      `
      let next = 0; const counts = {};
      async function worker() {
        while (next < 2000) { next++;
          let r; try { r = await request({ id: 1, method: 'ping' }); } catch (e) { r = { error: { code: 'client:' + e.code } }; }
          const k = r.ok ? 'ok' : r.closed ? 'closed' : r.error.code; counts[k] = (counts[k] || 0) + 1; }
      }
      const t0 = Date.now();
      await Promise.all(Array.from({ length: 48 }, worker));
      console.log(JSON.stringify({ counts, ms: Date.now() - t0 }));
    `,
    )) as { counts: Record<string, number>; ms: number };
    clearInterval(sampler);
    const { ok = 0, EUSERS = 0, ...others } = out.counts;
    expect(others).toEqual({});
    expect(ok + EUSERS).toBe(2000);
    expect(ok).toBeGreaterThan(500);
    expect(peak - baseRssKiB).toBeLessThan(RSS_SLACK_KIB);
  });
});

describe('random bytes against the live daemon', () => {
  it('300 connections of random bytes, random frames and random requests: vnetd keeps serving', async () => {
    const methods = ['ping', 'list', 'status', 'leases', 'whoami', 'tap', 'nope', '__proto__', 'constructor', 'toString'];
    const chunk = fc.oneof(
      // raw bytes
      fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
      // a plausible length before random bytes, so the UTF-8 and JSON paths are reached
      fc.uint8Array({ minLength: 1, maxLength: 300 }).map((b) => frameOf(Buffer.from(b))),
      // any JSON value in a frame
      fc.jsonValue({ maxDepth: 4 }).map((v) => frameOf(JSON.stringify(v) ?? 'null')),
      // a request with a random method and params
      fc
        .record({ id: fc.oneof(fc.integer(), fc.double(), fc.string()), method: fc.oneof(fc.constantFrom(...methods), fc.string()), params: fc.jsonValue({ maxDepth: 3 }) })
        .map((r) => frameOf(JSON.stringify(r))),
      // a good request cut short
      fc.nat({ max: 20 }).map((n) => req(1, 'ping').subarray(0, n)),
    );
    const rss = rssKiB();
    await fc.assert(
      fc.asyncProperty(fc.array(chunk, { minLength: 1, maxLength: 5 }), async (chunks) => {
        const x = await exchange(chunks, { end: true, waitMs: 3000 });
        // vnetd closes (our FIN, or its refusal) promptly and every frame it sends is a well-formed reply
        expect(x.closedByPeer).toBe(true);
        for (const r of x.replies) {
          expect(typeof r.id).toBe('number');
          if (r.ok) expect(r).toHaveProperty('result');
          else expect(r.error).toEqual({ code: expect.stringMatching(/^E[A-Z]+$/), message: expect.any(String) });
        }
      }),
      { numRuns: 300 },
    );
    expect(await vnetd.call('ping')).toMatchObject({ pong: true });
    expect(rssKiB() - rss).toBeLessThan(32 * 1024);
  });
});
