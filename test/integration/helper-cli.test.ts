/**
 * vnet-bridge-helper as QEMU runs it: argument refusals (threats.md item 4), the missing-daemon
 * message, and protocol conformance against a frame-level peer written here (not vnetd): the request
 * frame it sends, the error path, and the hand-off QEMU's side of the socketpair receives.
 */
import { execa } from 'execa';
import { spawn } from 'node:child_process';
import { closeSync, fstatSync, openSync, readFileSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeFrame, FrameReader } from '../../src/api/protocol.js';
import { cleanupAll, tempDir } from '../support/netns.js';
import { closeFd, fdOf, recvFds, sendFds, SOCK_DGRAM, socketpair, SyscallError } from '../../src/sys/libc.js';

/** the binary `make` built (test/support/global-setup.ts runs it), with the Makefile's flags */
const helper = fileURLToPath(new URL('../../build/vnet-bridge-helper', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run the helper with `fd` (if any) placed at fd 3 of the child, as QEMU passes its socketpair end. */
function runHelper(args: string[], opts: { fd?: number; runtimeDir?: string } = {}): Promise<Run> {
  const stdio: Array<'ignore' | 'pipe' | number> = ['ignore', 'pipe', 'pipe'];
  if (opts.fd !== undefined) stdio.push(opts.fd);
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  if (opts.runtimeDir !== undefined) env.VNET_RUNTIME_DIR = opts.runtimeDir;
  const child = spawn(helper, args, { stdio, env });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A frame-level peer on DIR/vnetd.sock: records requests and answers each with `reply`. */
async function peer(reply: (sock: net.Socket, request: unknown) => void) {
  const dir = tempDir('vnet-helper-');
  const requests: unknown[] = [];
  let connections = 0;
  const server = net.createServer((sock) => {
    connections += 1;
    const reader = new FrameReader();
    sock.on('data', (chunk) => {
      for (const req of reader.push(chunk)) {
        requests.push(req);
        reply(sock, req);
      }
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(path.join(dir, 'vnetd.sock'), resolve));
  return {
    dir,
    requests,
    get connections() {
      return connections;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * One recvmsg without waiting: the bytes and every fd that came with them. `data` is empty when the
 * peer has closed and nothing is left; `empty` when nothing is queued but the peer is still open.
 */
function recvNow(sock: number): { data: Buffer; fds: number[]; empty: boolean } {
  try {
    return { ...recvFds(sock, 4096, { dontWait: true }), empty: false };
  } catch (err) {
    if (err instanceof SyscallError && err.errno === 'EAGAIN') return { data: Buffer.alloc(0), fds: [], empty: true };
    throw err;
  }
}

/** What QEMU's end of the socketpair holds once the helper is gone and our copy of its end is closed. */
function qemuSide(ours: number, theirs: number) {
  closeFd(theirs);
  const first = recvNow(ours);
  const second = recvNow(ours);
  closeFd(ours);
  return { first, second };
}


afterAll(async () => {
  await cleanupAll();
});

describe('vnet-bridge-helper command line', () => {
  it('--help prints usage on stdout and exits 0', async () => {
    const r = await runHelper(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: vnet-bridge-helper \[--use-vnet\] --br=BRIDGE --fd=UNIXFD/);
    expect(r.stderr).toBe('');
  });

  type Fd = 'pair' | 'file' | 'listening' | 'dgram' | 'tcp';
  const cases: Array<{ name: string; args: string[]; fd: Fd; error: RegExp }> = [
    { name: 'an unknown option', args: ['--use-vnet', '--br=br0', '--fd=3', '--bogus'], fd: 'pair', error: /unknown option '--bogus'/ },
    { name: 'a repeated --br', args: ['--br=br0', '--br=br1', '--fd=3'], fd: 'pair', error: /--br given more than once/ },
    { name: 'a repeated --fd', args: ['--br=br0', '--fd=3', '--fd=3'], fd: 'pair', error: /--fd given more than once/ },
    { name: 'no --br', args: ['--use-vnet', '--fd=3'], fd: 'pair', error: /missing --br/ },
    { name: 'no --fd', args: ['--use-vnet', '--br=br0'], fd: 'pair', error: /missing --fd/ },
    { name: '--fd=abc', args: ['--br=br0', '--fd=abc'], fd: 'pair', error: /--fd=abc is not a file descriptor number/ },
    { name: '--fd=-1', args: ['--br=br0', '--fd=-1'], fd: 'pair', error: /--fd=-1 is not a file descriptor number/ },
    { name: 'an empty --fd=', args: ['--br=br0', '--fd='], fd: 'pair', error: /--fd= is not a file descriptor number/ },
    { name: '--fd=3x', args: ['--br=br0', '--fd=3x'], fd: 'pair', error: /not a file descriptor number/ },
    { name: 'a huge --fd', args: ['--br=br0', '--fd=99999999999999'], fd: 'pair', error: /not a file descriptor number/ },
    { name: 'an fd that is not open', args: ['--br=br0', '--fd=200'], fd: 'pair', error: /--fd=200: Bad file descriptor/ },
    { name: 'an fd that is a regular file', args: ['--br=br0', '--fd=3'], fd: 'file', error: /--fd=3 is not a socket/ },
    { name: 'an unconnected (listening) unix socket', args: ['--br=br0', '--fd=3'], fd: 'listening', error: /--fd=3 is not a connected socket/ },
    { name: 'a datagram unix socket', args: ['--br=br0', '--fd=3'], fd: 'dgram', error: /--fd=3 is not a stream socket/ },
    { name: 'a TCP socket', args: ['--br=br0', '--fd=3'], fd: 'tcp', error: /--fd=3 is not a unix socket/ },
    { name: 'an empty bridge name', args: ['--br=', '--fd=3'], fd: 'pair', error: /empty bridge name/ },
    { name: 'a 16-byte bridge name', args: ['--br=abcdefghijklmnop', '--fd=3'], fd: 'pair', error: /bridge name is 16 bytes, the limit is 15/ },
  ];

  for (const c of cases) {
    it(`refuses ${c.name}: one stderr line, exit 1, nothing sent anywhere`, async () => {
      const daemon = await peer(() => {});
      const [ours, theirs] = socketpair();
      const dgram = socketpair(SOCK_DGRAM);
      const file = path.join(daemon.dir, 'not-a-socket');
      const fileFd = openSync(file, 'w');
      const listening = net.createServer().listen(path.join(daemon.dir, 'listening.sock'));
      const tcp = net.createServer().listen(0, '127.0.0.1');
      await Promise.all([listening, tcp].map((s) => new Promise((r) => s.once('listening', r))));
      const fds: Record<Fd, number> = {
        pair: theirs,
        file: fileFd,
        listening: fdOf(listening),
        dgram: dgram[1],
        tcp: fdOf(tcp),
      };
      try {
        const r = await runHelper(c.args, { fd: fds[c.fd], runtimeDir: daemon.dir });
        expect(r.code).toBe(1);
        expect(r.stdout).toBe('');
        expect(r.stderr).toMatch(/^vnet-bridge-helper: [^\n]+\n$/);
        expect(r.stderr).toMatch(c.error);
        expect(daemon.connections).toBe(0);
        expect(readFileSync(file).length).toBe(0);
        const q = qemuSide(ours, theirs);
        expect(q.first.data.length).toBe(0);
        expect(q.first.fds).toEqual([]);
        expect(recvNow(dgram[0]).empty).toBe(true);
      } finally {
        closeSync(fileFd);
        closeFd(dgram[0]);
        closeFd(dgram[1]);
        listening.close();
        tcp.close();
        await daemon.close();
      }
    });
  }

  it('says vnetd is not running when there is no socket', async () => {
    const dir = tempDir('vnet-helper-');
    const [ours, theirs] = socketpair();
    const r = await runHelper(['--use-vnet', '--fd=3', '--br=virbr0'], { fd: theirs, runtimeDir: dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `vnet-bridge-helper: vnetd is not running (no socket at ${dir}/vnetd.sock)\n`,
    );
    expect(qemuSide(ours, theirs).first.fds).toEqual([]);
  });

  it('says vnetd is not running when only a stale socket file is left', async () => {
    const dir = tempDir('vnet-helper-');
    const sock = path.join(dir, 'vnetd.sock');
    // a listener killed before it could clean up leaves its socket file behind
    await execa(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(sock)}, () => process.kill(process.pid, 'SIGKILL'))`], { reject: false });
    expect(statSync(sock).isSocket()).toBe(true);
    const [ours, theirs] = socketpair();
    const r = await runHelper(['--use-vnet', '--fd=3', '--br=virbr0'], { fd: theirs, runtimeDir: dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`vnet-bridge-helper: vnetd is not running (nothing listens on ${sock})\n`);
    expect(qemuSide(ours, theirs).first).toMatchObject({ fds: [], data: Buffer.alloc(0) });
  });
});

describe('vnet-bridge-helper protocol conformance (against a frame-level peer, not vnetd)', () => {
  it('sends one tap request and prints the error message of a refusal, exit 1', async () => {
    const daemon = await peer((sock) =>
      sock.end(encodeFrame({ id: 1, ok: false, error: { code: 'EACCES', message: 'access denied by acl file' } })),
    );
    const [ours, theirs] = socketpair();
    try {
      const r = await runHelper(['--use-vnet', '--br=virbr0', '--fd=3'], { fd: theirs, runtimeDir: daemon.dir });
      expect(daemon.requests).toEqual([{ id: 1, method: 'tap', params: { bridge: 'virbr0', vnetHdr: true } }]);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe('vnet-bridge-helper: access denied by acl file\n');
      const q = qemuSide(ours, theirs);
      expect(q.first.data.length).toBe(0);
      expect(q.first.fds).toEqual([]);
    } finally {
      await daemon.close();
    }
  });

  it('JSON-escapes the bridge name, sends vnetHdr false without --use-vnet, and unescapes the message', async () => {
    const daemon = await peer((sock) =>
      sock.end(encodeFrame({ id: 1, ok: false, error: { code: 'EINVAL', message: 'bad name "a\\"b\\\\c"\twith a tab' } })),
    );
    const [ours, theirs] = socketpair();
    try {
      const r = await runHelper(['--fd=3', '--br=a"b\\c'], { fd: theirs, runtimeDir: daemon.dir });
      expect(daemon.requests).toEqual([{ id: 1, method: 'tap', params: { bridge: 'a"b\\c', vnetHdr: false } }]);
      expect(r.stderr).toBe('vnet-bridge-helper: bad name "a\\"b\\\\c" with a tab\n');
      expect(r.code).toBe(1);
      expect(qemuSide(ours, theirs).first).toMatchObject({ fds: [], data: Buffer.alloc(0) });
    } finally {
      await daemon.close();
    }
  });

  it('passes the fd of an ok reply (arriving in pieces) to QEMU as exactly one byte 0x00 plus the fd', async () => {
    const devNull = openSync('/dev/null', 'r');
    const daemon = await peer((sock) => {
      const frame = encodeFrame({ id: 1, ok: true, result: { name: 'tap0' } });
      sendFds(fdOf(sock), frame.subarray(0, 3), [devNull]); // the fd rides on the first bytes
      setTimeout(() => sock.write(frame.subarray(3, 9)), 30);
      setTimeout(() => sock.end(frame.subarray(9)), 60);
    });
    const [ours, theirs] = socketpair();
    try {
      const r = await runHelper(['--br=virbr0', '--fd=3', '--use-vnet'], { fd: theirs, runtimeDir: daemon.dir });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const q = qemuSide(ours, theirs);
      expect([...q.first.data]).toEqual([0]);
      expect(q.first.fds).toHaveLength(1);
      const got = fstatSync(q.first.fds[0]!);
      const want = statSync('/dev/null');
      expect([got.rdev, got.ino]).toEqual([want.rdev, want.ino]);
      closeFd(q.first.fds[0]!);
      expect(q.second.data.length).toBe(0); // end of stream: nothing more was written
      expect(q.second.empty).toBe(false);
    } finally {
      closeSync(devNull);
      await daemon.close();
    }
  });

  it('refuses an ok reply that carries no fd, and a reply frame longer than 64 KiB', async () => {
    for (const [reply, error] of [
      [encodeFrame({ id: 1, ok: true, result: {} }), 'vnetd replied ok but sent no tap file descriptor'],
      [Buffer.from([0x7f, 0xff, 0xff, 0xff]), 'vnetd sent a frame of 2147483647 bytes (allowed 1..65536)'],
      [Buffer.from([0, 0, 0, 2, 0x7b]), 'vnetd closed the connection before replying'],
      [encodeFrame(['not', 'an', 'object']), 'vnetd sent a malformed reply'],
    ] as const) {
      const daemon = await peer((sock) => sock.end(reply));
      const [ours, theirs] = socketpair();
      try {
        const r = await runHelper(['--use-vnet', '--br=virbr0', '--fd=3'], { fd: theirs, runtimeDir: daemon.dir });
        expect(r.stderr).toBe(`vnet-bridge-helper: ${error}\n`);
        expect(r.code).toBe(1);
        expect(qemuSide(ours, theirs).first.fds).toEqual([]);
      } finally {
        await daemon.close();
      }
    }
  });
});
