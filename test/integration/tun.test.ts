/**
 * Taps and fd hand-off against the kernel. Taps are made in throwaway namespaces
 * by test/support/drivers/tap.mjs; SO_PEERCRED and SCM_RIGHTS are exercised in
 * this process over socketpairs and a unix server in a temp dir.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { chmodSync, closeSync, existsSync, openSync, readlinkSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { cleanupAll, createNetns, tempDir, trackPid, untrackPid, type Netns } from '../support/netns.js';
import { closeFd, fdOf, getPeerCred, pidfdOpen, recvFd, sendFd, setNonBlocking, socketpair, trySendFds } from '../../src/sys/libc.js';
import { SyscallError } from '../../src/netlink/errors.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const TAP_DRIVER = path.join(ROOT, 'test/support/drivers/tap.mjs');
const IFF_VNET_HDR = 0x4000;

beforeAll(async () => {
  // the tap driver imports dist/, which the global setup built
  expect(existsSync(path.join(ROOT, 'dist/netlink/tun.js'))).toBe(true);
});

const children: ChildProcessWithoutNullStreams[] = [];
afterAll(async () => {
  for (const c of children) {
    c.kill('SIGKILL');
    untrackPid(c.pid);
  }
  await cleanupAll();
});

/** Start the tap driver in `ns`; resolves with its first output line, parsed. */
function startTap(ns: Netns, opts: Record<string, unknown>, extraFd?: number) {
  const stdio: Array<'pipe' | number> = ['pipe', 'pipe', 'pipe'];
  if (extraFd !== undefined) stdio.push(extraFd);
  const child = spawn('ip', ['netns', 'exec', ns.name, 'node', TAP_DRIVER, JSON.stringify(opts)], { stdio }) as ChildProcessWithoutNullStreams;
  children.push(child);
  trackPid(child.pid);
  // queue lines as they come, so none is lost before next() is called
  const queue: string[] = [];
  let wake: (() => void) | undefined;
  createInterface({ input: child.stdout }).on('line', (l) => {
    queue.push(l);
    wake?.();
  });
  const next = async (): Promise<string> => {
    const deadline = Date.now() + 10_000;
    while (queue.length === 0) {
      if (Date.now() > deadline) throw new Error('tap driver said nothing for 10 s');
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 200);
      });
    }
    return queue.shift() as string;
  };
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, next, exited };
}

async function bridgeNs(mtu = 1400): Promise<Netns> {
  const ns = await createNetns('vtap');
  await ns.run('ip', ['link', 'add', 'vbr0', 'address', '52:54:00:00:00:01', 'mtu', String(mtu), 'type', 'bridge']);
  await ns.run('ip', ['link', 'set', 'vbr0', 'up']);
  return ns;
}

async function tapLinks(ns: Netns): Promise<any[]> {
  return JSON.parse(await ns.run('ip', ['-d', '-j', 'link', 'show', 'type', 'tun']));
}

async function waitUntil(pred: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('openTap + attachTap', () => {
  it('makes a vnet-hdr tap on the bridge with its MTU, an fe: MAC, the owner, up; it goes when the fd is closed', async () => {
    const ns = await bridgeNs(1400);
    const d = startTap(ns, { bridge: 'vbr0', vnetHdr: true, ownerUid: 65534 });
    const out = JSON.parse(await d.next());
    expect(out.tap).toMatchObject({ name: 'tap0', vnetHdr: true });

    const [tap, ...others] = await tapLinks(ns);
    expect(others).toEqual([]);
    expect(tap).toMatchObject({ ifname: 'tap0', master: 'vbr0', mtu: 1400 });
    expect(tap.flags).toContain('UP');
    expect(tap.address).toMatch(/^fe:/);
    expect(tap.linkinfo.info_data).toMatchObject({ type: 'tap', pi: false, vnet_hdr: true, persist: false, user: 'nobody' });
    const tunFlags = Number(await ns.run('cat', ['/sys/class/net/tap0/tun_flags']));
    expect(tunFlags & IFF_VNET_HDR).toBe(IFF_VNET_HDR);
    expect(out.link).toMatchObject({ name: 'tap0', mtu: 1400, up: true, mac: tap.address });
    // the tap's fe: MAC never wins the bridge address
    expect(JSON.parse(await ns.run('ip', ['-j', 'link', 'show', 'vbr0']))[0].address).toBe('52:54:00:00:00:01');

    d.child.stdin.write('close\n');
    expect(await d.next()).toBe('closed');
    expect(await tapLinks(ns)).toEqual([]);
    d.child.stdin.end();
    expect(await d.exited).toBe(0);
  });

  it('leaves IFF_VNET_HDR off when not asked, and numbers taps from tap%d', async () => {
    const ns = await bridgeNs(1500);
    const a = startTap(ns, { bridge: 'vbr0', vnetHdr: false });
    const b = startTap(ns, { bridge: 'vbr0', vnetHdr: false });
    const names = [JSON.parse(await a.next()).tap.name, JSON.parse(await b.next()).tap.name].sort();
    expect(names).toEqual(['tap0', 'tap1']);
    const links = await tapLinks(ns);
    expect(links.map((t) => t.ifname).sort()).toEqual(['tap0', 'tap1']);
    for (const t of links) {
      expect(Number(await ns.run('cat', [`/sys/class/net/${t.ifname}/tun_flags`]))).toBe(0x1002); // IFF_TAP|IFF_NO_PI
      expect(t).toMatchObject({ master: 'vbr0', mtu: 1500 });
    }
    a.child.stdin.end();
    b.child.stdin.end();
    await Promise.all([a.exited, b.exited]);
    expect(await tapLinks(ns)).toEqual([]);
  });

  it('hands the tap fd over a socketpair like qemu-bridge-helper; the tap lives as long as the receiver holds it', async () => {
    const ns = await bridgeNs();
    const [mine, theirs] = socketpair();
    const d = startTap(ns, { bridge: 'vbr0', vnetHdr: true, handoffFd: 3 }, theirs);
    closeFd(theirs);
    const out = JSON.parse(await d.next());
    let got: { data: Buffer; fd?: number } | undefined;
    await waitUntil(async () => {
      try {
        got = recvFd(mine, 16, { dontWait: true });
        return true;
      } catch (e) {
        if ((e as SyscallError).errno !== 'EAGAIN') throw e;
        return false;
      }
    }, 'the tap fd');
    expect(got?.data).toEqual(Buffer.from([0]));
    const fd = got?.fd;
    expect(fd).toBeTypeOf('number');
    expect(readlinkSync(`/proc/self/fd/${fd}`)).toBe('/dev/net/tun');
    expect(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8')).toMatch(new RegExp(`iff:\\s*${out.tap.name}\\b`));

    d.child.stdin.end();
    expect(await d.exited).toBe(0);
    // the driver closed its copy and exited: the tap is still there, held by us
    expect((await tapLinks(ns)).map((t) => t.ifname)).toEqual([out.tap.name]);
    closeFd(fd as number);
    await waitUntil(async () => (await tapLinks(ns)).length === 0, 'the tap to go');
    closeFd(mine);
  });

  it('attachTap to a bridge that is not there fails with ENODEV, and no tap outlives its fd', async () => {
    const ns = await createNetns('vtap');
    // no lookup in the driver: the missing bridge reaches attachTap (vnetd maps this errno to "no bridge named ...")
    const d = startTap(ns, { bridge: 'nosuchbr', vnetHdr: true, lookUp: false });
    expect(JSON.parse(await d.next()).error).toEqual({
      name: 'NetlinkError',
      errno: 'ENODEV',
      message: expect.stringMatching(/^put tap tap\d+ on bridge nosuchbr: ENODEV \(SIOCGIFMTU nosuchbr: no interface named nosuchbr\)$/),
    });
    d.child.stdin.end();
    expect(await d.exited).toBe(1);
    await waitUntil(async () => (await tapLinks(ns)).length === 0, 'the tap to go with its fd');
  });
});

describe('SO_PEERCRED', () => {
  it('gives the uid, gid and pid of the connecting process, whatever it claims', async () => {
    const dir = tempDir();
    chmodSync(dir, 0o755);
    const sock = path.join(dir, 's.sock');
    const creds: Array<ReturnType<typeof getPeerCred>> = [];
    const server = net.createServer((c) => {
      creds.push(getPeerCred(fdOf(c)));
      c.end();
    });
    await new Promise<void>((r) => server.listen(sock, r));
    chmodSync(sock, 0o777);
    const client = `require('net').connect(${JSON.stringify(sock)}).on('data',()=>{}).on('end',()=>process.exit(0)).on('error',e=>{console.error(e);process.exit(2)})`;
    try {
      // setpriv execs node, so the pid that connects is the one spawned
      const asNobody = execa('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, '-e', client]);
      await asNobody;
      const asRoot = execa(process.execPath, ['-e', client]);
      await asRoot;
      expect(creds).toEqual([
        { pid: asNobody.pid, uid: 65534, gid: 65534 },
        { pid: asRoot.pid, uid: 0, gid: 0 },
      ]);
    } finally {
      server.close();
    }
  });
});

describe('fd passing and libc helpers', () => {
  it('passes a working fd: the receiver reads the file the sender opened', () => {
    const dir = tempDir();
    const file = path.join(dir, 'payload');
    writeFileSync(file, 'through SCM_RIGHTS');
    const [a, b] = socketpair();
    const f = openSync(file, 'r');
    sendFd(a, Buffer.from('x'), f);
    closeSync(f);
    const got = recvFd(b);
    expect(got.data.toString()).toBe('x');
    const buf = Buffer.alloc(64);
    const n = readSync(got.fd as number, buf, 0, 64, 0);
    expect(buf.subarray(0, n).toString()).toBe('through SCM_RIGHTS');
    // received close-on-exec, so it cannot leak into children
    expect(parseInt(/flags:\s*(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${got.fd}`, 'utf8'))?.[1] ?? '0', 8) & 0o2000000).toBe(0o2000000);
    closeFd(got.fd as number);
    closeFd(a);
    expect(recvFd(b)).toEqual({ data: Buffer.alloc(0) });
    closeFd(b);
  });

  it('gives up on a full non-blocking socket with EAGAIN instead of hanging, and reports EPIPE for a gone peer', () => {
    const [a, b] = socketpair();
    setNonBlocking(a, true);
    const devnull = openSync('/dev/null', 'r');
    let err: unknown;
    let sent = 0;
    try {
      for (; sent < 100_000; sent++) sendFd(a, Buffer.from([0]), devnull);
    } catch (e) {
      err = e;
    }
    expect(sent).toBeGreaterThan(10);
    expect(err).toBeInstanceOf(SyscallError);
    expect((err as SyscallError).message).toMatch(/^sendmsg fd \d+: EAGAIN$/);
    // without waiting: a server tries again later itself (trySendFds says "full" with -1)
    expect(trySendFds(a, Buffer.from([0]), [devnull])).toBe(-1);
    closeFd(b);
    expect(() => sendFd(a, Buffer.from([0]), devnull)).toThrow(/^sendmsg fd \d+: EPIPE$/);
    closeFd(a);
    closeSync(devnull);
  });

  it('opens a pidfd for a live process and says ESRCH for a gone one', async () => {
    const fd = pidfdOpen(process.pid);
    expect(readlinkSync(`/proc/self/fd/${fd}`)).toBe('anon_inode:[pidfd]');
    closeFd(fd);
    const gone = execa('true');
    await gone;
    expect(() => pidfdOpen(gone.pid as number)).toThrow(/pidfd_open pid \d+: ESRCH/);
  });
});
