/**
 * One vnetd per runtime folder: the first holds an flock on RUNTIME/vnetd.lock, a second
 * one (started by hand or through socket activation) exits 1 naming the first one's pid
 * and touches nothing (the first one's socket stays, and keeps answering). The kernel drops
 * the lock when its holder dies, even by SIGKILL with its dnsmasq children left running,
 * so a new vnetd starts after that.
 */
import { execa } from 'execa';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from '../../src/api/client.js';
import { cleanupAll, createNetns, tempDir, trackPid, untrackPid, waitFor, type Netns } from '../support/netns.js';
import { VNETD, Vnetd, vnetEnv, type VnetEnv } from '../support/vnetd.js';

const NET = 'bridge = "vnlck0"\naddress = "10.63.0.1/24"\ndhcp-range = ["10.63.0.10", "10.63.0.99"]\non-demand = false\n';

let ns: Netns;
let env: VnetEnv;
let first: Vnetd;

/** a second vnetd on the same folders, run to its end */
async function second(extra: string[] = []) {
  const p = execa('ip', ['netns', 'exec', ns.name, ...extra, process.execPath, VNETD], {
    env: { ...process.env, ...env },
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
    timeout: 30_000,
  });
  trackPid(p.pid);
  const r = await p;
  untrackPid(p.pid);
  return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
}

beforeAll(async () => {
  ns = await createNetns('vlck');
  env = vnetEnv();
  writeFileSync(path.join(env.VNET_CONFIG_DIR, 'networks', 'lck.toml'), NET);
  first = await new Vnetd(ns, env).start();
  const up = await first.cli(['up', 'lck']);
  expect(up.exitCode, up.stderr).toBe(0);
});

afterAll(async () => {
  await first?.stop();
  await cleanupAll();
});

describe('one vnetd per runtime folder', () => {
  it('the first records its pid in vnetd.lock', () => {
    expect(readFileSync(path.join(env.VNET_RUNTIME_DIR, 'vnetd.lock'), 'utf8')).toBe(`${first.pid}\n`);
  });

  it('a second exits 1 naming the first one\'s pid, and never touches its socket', async () => {
    const sockBefore = statSync(first.socket);
    const stateBefore = statSync(path.join(env.VNET_RUNTIME_DIR, 'state.json'));
    const dnsmasqBefore = first.children('dnsmasq');
    expect(dnsmasqBefore).toHaveLength(1);

    const r = await second();
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe(
      `vnetd: another vnetd (pid ${first.pid}) already runs on ${env.VNET_RUNTIME_DIR}: it holds ${path.join(env.VNET_RUNTIME_DIR, 'vnetd.lock')}; not starting a second one`,
    );
    expect(r.stdout).toBe(''); // not one log line: it did nothing

    // the same socket file (same inode), still answering; the same state and dnsmasq
    const sockAfter = statSync(first.socket);
    expect([sockAfter.ino, sockAfter.ctimeMs]).toEqual([sockBefore.ino, sockBefore.ctimeMs]);
    expect(await call(first.socket, 'ping', {})).toBeDefined();
    expect(((await call(first.socket, 'status', { name: 'lck' })) as { state: string }).state).toBe('up');
    expect(statSync(path.join(env.VNET_RUNTIME_DIR, 'state.json')).mtimeMs).toBe(stateBefore.mtimeMs);
    expect(first.children('dnsmasq')).toEqual(dnsmasqBefore);
    expect(readFileSync(path.join(env.VNET_RUNTIME_DIR, 'vnetd.lock'), 'utf8')).toBe(`${first.pid}\n`);
    expect(first.alive()).toBe(true);
  });

  it('socket activation (LISTEN_FDS) takes the same lock', async () => {
    // systemd-socket-activate listens on a socket of its own, execs vnetd with LISTEN_FDS=1
    // on the first connection, and that vnetd must refuse too
    const sock = path.join(env.VNET_RUNTIME_DIR, 'activated.sock');
    const setenv = Object.entries(env).flatMap(([k, v]) => ['-E', `${k}=${v}`]);
    const p = execa('ip', ['netns', 'exec', ns.name, 'systemd-socket-activate', '-l', sock, ...setenv, process.execPath, VNETD], {
      reject: false,
      stdin: 'ignore',
      timeout: 30_000,
    });
    trackPid(p.pid);
    let refused = '';
    for (let i = 0; i < 100 && p.exitCode === null; i += 1) {
      refused = await call(sock, 'ping', {}, 5000).then(
        () => 'answered',
        (err: Error) => err.message,
      );
      if (refused !== 'answered' && !/ENOENT|no socket|nothing listens/.test(refused)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const r = await p;
    untrackPid(p.pid);
    expect(refused).not.toBe('answered');
    expect(r.exitCode).toBe(1);
    expect(String(r.stderr)).toContain(`vnetd: another vnetd (pid ${first.pid}) already runs on ${env.VNET_RUNTIME_DIR}`);
    expect(await call(first.socket, 'ping', {})).toBeDefined();
  });

  it('the lock outlives a full garbage collection of its holder', async () => {
    // Node closes a file handle that nothing refers to when it collects it, and the lock goes
    // with the file. A heap snapshot (SIGUSR2 here, written in a temp folder) collects
    // everything first; the one reference to the lock's handle must survive bin/vnetd's bundle.
    await first.stop();
    const dir = tempDir('vnet-lock-gc-');
    first = await new Vnetd(ns, { ...env, NODE_OPTIONS: '--heapsnapshot-signal=SIGUSR2' } as typeof env, ['sh', '-c', 'cd "$0" && exec "$@"', dir]).start();
    process.kill(first.pid!, 'SIGUSR2');
    await waitFor('the heap snapshot', () => readdirSync(dir).some((f) => f.endsWith('.heapsnapshot')));
    // written on vnetd's one thread: once it answers again, the collection is behind it
    expect(await call(first.socket, 'ping', {}, 30_000)).toBeDefined();
    const r = await second();
    expect(r.exitCode, r.stderr).toBe(1);
    expect(r.stderr).toContain(`another vnetd (pid ${first.pid})`);
    expect(first.log).not.toContain('on garbage collection');
  });

  it('after SIGKILL of the first (its dnsmasq left running), a new one starts and takes over', async () => {
    const orphan = first.children('dnsmasq');
    expect(orphan).toHaveLength(1);
    const oldPid = first.pid;
    await first.stop('SIGKILL');
    // the dnsmasq child outlived it: the lock must not have gone with it to the child
    expect(readFileSync(`/proc/${orphan[0]}/cmdline`, 'utf8')).toContain('dnsmasq');

    first = await new Vnetd(ns, env).start();
    expect(first.pid).not.toBe(oldPid);
    expect(readFileSync(path.join(env.VNET_RUNTIME_DIR, 'vnetd.lock'), 'utf8')).toBe(`${first.pid}\n`);
    expect(((await first.call('status', { name: 'lck' })) as { state: string }).state).toBe('up');

    const r = await second();
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`another vnetd (pid ${first.pid})`);
    await first.cli(['down', 'lck']);
  });
});
