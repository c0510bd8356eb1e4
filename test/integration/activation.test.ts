/**
 * Socket activation and idle exit, driven by systemd's own
 * systemd-socket-activate (it listens like vnetd.socket and execs vnetd with
 * LISTEN_FDS on the first connection). READY=1 arrives on $NOTIFY_SOCKET; with no
 * network up and no client vnetd exits after VNET_IDLE_EXIT seconds, leaving nothing
 * running; the next client starts it again.
 */
import { execa, type ResultPromise } from 'execa';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from '../../src/api/client.js';
import { cleanupAll, createNetns, pidsWithArg, tempDir, trackPid, unixListening, waitFor, type Netns } from '../support/netns.js';
import { VNETD, vnetEnv, type VnetEnv } from '../support/vnetd.js';

let ns: Netns;
let env: VnetEnv;
let notifyPath: string;
let notifier: ResultPromise;
let notes = '';
/** VNET_IDLE_EXIT for every activation: the shortest whole second, so the waits for it are short */
const IDLE_EXIT_S = 1;

function activate(): ResultPromise {
  const sock = path.join(env.VNET_RUNTIME_DIR, 'vnetd.sock');
  rmSync(sock, { force: true }); // the socket file of an earlier activation
  const setenv = Object.entries({ ...env, VNET_IDLE_EXIT: String(IDLE_EXIT_S), NOTIFY_SOCKET: notifyPath }).flatMap(([k, v]) => ['-E', `${k}=${v}`]);
  const p = execa('ip', ['netns', 'exec', ns.name, 'systemd-socket-activate', '-l', sock, ...setenv, process.execPath, VNETD], {
    reject: false,
    stdin: 'ignore',
  });
  trackPid(p.pid);
  return p;
}

function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}


beforeAll(async () => {
  ns = await createNetns('va');
  env = vnetEnv();
  notifyPath = path.join(tempDir('vnet-notify-'), 'notify.sock');
  // a stand-in for systemd's notification socket: print every datagram
  notifier = execa('/usr/bin/python3', [
    '-c',
    'import socket,sys\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nprint("bound",flush=True)\nwhile True: print(s.recv(4096).decode(),flush=True)',
    notifyPath,
  ], { reject: false, buffer: false });
  trackPid(notifier.pid);
  notifier.stdout!.on('data', (d: Buffer) => (notes += d.toString()));
  await waitFor('notify socket', () => notes.includes('bound'));
  const { mkdirSync } = await import('node:fs');
  mkdirSync(env.VNET_RUNTIME_DIR, { recursive: true });
});

afterAll(async () => {
  notifier?.kill('SIGKILL');
  await cleanupAll();
});

describe('socket activation', () => {
  it('no vnetd until the first client; READY=1 once it serves; idle exit after VNET_IDLE_EXIT', async () => {
    const p = activate();
    await waitFor('the listening socket', () => unixListening(path.join(env.VNET_RUNTIME_DIR, 'vnetd.sock'), ns));
    // listening, but no daemon yet: the process is still systemd-socket-activate (which execs
    // vnetd on the first connection and on nothing else, so there is no moment to wait for)
    expect(comm(p.pid!)).toBe('systemd-socket-activate'.slice(0, 15));

    const status = (await call(path.join(env.VNET_RUNTIME_DIR, 'vnetd.sock'), 'list')) as Array<{ name: string; state: string }>;
    expect(status).toEqual([expect.objectContaining({ name: 'default', state: 'down' })]);
    expect(comm(p.pid!)).toBe('vnetd');
    await waitFor('READY=1', () => notes.includes('READY=1'));

    // no network up, no client: it goes away by itself
    const t0 = Date.now();
    const r = await p;
    expect(r.exitCode).toBe(0);
    expect(Date.now() - t0).toBeLessThan(8000);
    expect(notes).toContain('STOPPING=1');
  });

  it('stays while a network is up, exits after it goes down; the next client starts it again and it adopts the network', async () => {
    let p = activate();
    const sock = path.join(env.VNET_RUNTIME_DIR, 'vnetd.sock');
    await waitFor('the listening socket', () => unixListening(sock, ns));
    expect(await call(sock, 'up', { name: 'default' })).toMatchObject({ name: 'default', state: 'up' });
    // the idle-exit timer is armed when the last client leaves: were the up network not to
    // count, vnetd would be gone IDLE_EXIT_S after that; 500 ms more for its exit to show
    await new Promise((r) => setTimeout(r, IDLE_EXIT_S * 1000 + 500));
    expect(comm(p.pid!)).toBe('vnetd');

    // a restart through the socket finds the running network and keeps it
    p.kill('SIGTERM');
    await p;
    p = activate();
    await waitFor('the listening socket', () => unixListening(sock, ns));
    const s = (await call(sock, 'status', { name: 'default' })) as { state: string };
    expect(s.state).toBe('up');
    expect((await ns.links()).map((l) => l.ifname)).toContain('virbr0');

    await call(sock, 'down', { name: 'default' });
    const r = await p;
    expect(r.exitCode).toBe(0);
    // nothing left running or programmed
    expect((await ns.links()).map((l) => l.ifname)).not.toContain('virbr0');
    expect((await ns.tryRun('nft', ['list', 'table', 'inet', 'vnet'])).exitCode).not.toBe(0);
    expect(pidsWithArg(`--conf-file=${path.join(env.VNET_RUNTIME_DIR, 'dnsmasq', 'default.conf')}`)).toEqual([]);
  });
});
