/**
 * A caller cannot make vnetd's log grow with its own bytes. `nobody` sends refused
 * requests with huge inputs over D-Bus (three `Up` calls with 10 MB names) and over the socket
 * (60 KB names, bridges and long method names); vnetd's log grows by a few lines, every field
 * cut, and refusals are logged once per uid per 10 s at most, the next line saying how many
 * were held back. Both fronts share that one line per uid.
 */
import { execa } from 'execa';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DbusDaemon } from '../support/dbus-daemon.js';
import { cleanupAll, createNetns, trackPid, untrackPid, waitFor } from '../support/netns.js';
import { ROOT, Vnetd, vnetEnv } from '../support/vnetd.js';

const NOBODY = 65534;
const DBUS_NEXT = path.join(ROOT, 'node_modules/dbus-next/index.js');
const REFUSALS = new Set(['request refused', 'D-Bus call refused', 'connection refused', 'client dropped']);

let bus: DbusDaemon;
let vnetd: Vnetd;
/** vnetd's log size (bytes) before the first test */
let logStart = 0;

interface Line {
  level: number;
  time: number;
  msg: string;
  uid?: number;
  suppressed?: number;
  [k: string]: unknown;
}

/** vnetd's complete log lines so far */
function lines(): Line[] {
  return vnetd.log
    .split('\n')
    .slice(0, -1)
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line);
}

const refusalsOf = (uid: number) => lines().filter((l) => REFUSALS.has(l.msg) && l.uid === uid);

/** An ES module run as nobody (node: built-ins, and dbus-next by path); its last line of output, as JSON. */
function asNobody(body: string, env: Record<string, string>) {
  const proc = execa('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, '--input-type=module', '-e', body], {
    env: { ...env, PATH: '/usr/bin:/bin' },
    extendEnv: false,
    reject: false,
    stdin: 'pipe',
    buffer: true,
  });
  const pid = proc.pid;
  trackPid(pid);
  void proc.then(() => untrackPid(pid));
  return proc;
}

async function lastLine(proc: ReturnType<typeof asNobody>): Promise<unknown> {
  proc.stdin!.end();
  const r = await proc;
  if (r.exitCode !== 0) throw new Error(`script as nobody failed (${r.exitCode}): ${String(r.stderr)}`);
  return JSON.parse(String(r.stdout).trim().split('\n').pop()!);
}

const SOCKET_CLIENT = `
  import net from 'node:net';
  const frame = (v) => { const b = Buffer.from(JSON.stringify(v)); const h = Buffer.alloc(4); h.writeUInt32BE(b.length); return Buffer.concat([h, b]); };
  function request(v) {
    return new Promise((resolve, reject) => {
      const s = net.createConnection(process.env.SOCK);
      let buf = Buffer.alloc(0);
      s.on('connect', () => s.write(frame(v)));
      s.on('data', (d) => { buf = Buffer.concat([buf, d]);
        if (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) { s.destroy(); resolve(JSON.parse(buf.subarray(4, 4 + buf.readUInt32BE(0)))); } });
      s.on('error', reject);
    });
  }
`;

beforeAll(async () => {
  bus = await DbusDaemon.start();
  const ns = await createNetns('vlog');
  vnetd = await new Vnetd(ns, vnetEnv({ VNET_DBUS_ADDRESS: bus.address })).start();
  await waitFor('vnetd to own org.vnet.Vnet1', () => vnetd.log.includes('"msg":"D-Bus name owned"'), 15_000);
  logStart = Buffer.byteLength(vnetd.log);
});

afterAll(async () => {
  await vnetd?.stop();
  await bus?.stop();
  await cleanupAll();
});

describe('caller input in vnetd’s log', () => {
  it('three D-Bus Up calls with 10 MB names from nobody are refused and add one short line', { timeout: 120_000 }, async () => {
    const out = (await lastLine(
      asNobody(
        `
        const dbus = (await import(${JSON.stringify(DBUS_NEXT)})).default;
        const bus = dbus.sessionBus({ busAddress: process.env.BUS });
        const name = 'N'.repeat(10 * 1024 * 1024);
        const got = [];
        const call = (member, signature, body) => bus.call(new dbus.Message({ destination: 'org.vnet.Vnet1', path: '/org/vnet/Vnet1', interface: 'org.vnet.Vnet1.Manager', member, signature, body }));
        for (let i = 0; i < 3; i++) {
          try { await call('Up', 's', [name]); got.push('ok'); } catch (e) { got.push(e.type ?? String(e)); got.push(Buffer.byteLength(e.text ?? '')); }
        }
        bus.disconnect();
        console.log(JSON.stringify(got));
      `,
        { BUS: bus.address },
      ),
    )) as unknown[];
    // each refusal, and a reply that carries a bounded head of the name, not 10 MB back
    for (let i = 0; i < 3; i++) {
      expect(out[2 * i]).toBe('org.vnet.Vnet1.Error.PermissionDenied');
      expect(out[2 * i + 1]).toBeGreaterThan(100);
      expect(out[2 * i + 1]).toBeLessThanOrEqual(4096);
    }
    expect(Buffer.byteLength(vnetd.log) - logStart).toBeLessThan(64 * 1024);
    await waitFor('the refusal logged', () => refusalsOf(NOBODY).length > 0, 5000);
    const [line, ...more] = refusalsOf(NOBODY);
    expect(more).toEqual([]);
    expect(line).toMatchObject({ level: 40, msg: 'D-Bus call refused', member: 'org.vnet.Vnet1.Manager.Up', error: 'org.vnet.Vnet1.Error.PermissionDenied' });
    expect(line!.reason).toMatch(/^uid 65534 may not bring up network "N+… \(\d{8} characters\)$/);
    expect(Buffer.byteLength(vnetd.log) - logStart).toBeLessThan(64 * 1024);
  });

  it('refused socket requests with 60 KB inputs from nobody are answered and add a line at most', { timeout: 60_000 }, async () => {
    const before = Buffer.byteLength(vnetd.log);
    const codes = await lastLine(
      asNobody(
        `${SOCKET_CLIENT}
        const big = (c) => c.repeat(60_000);
        const codes = [];
        for (let i = 0; i < 3; i++) {
          for (const req of [{ method: 'up', params: { name: big('N') } }, { method: 'down', params: { name: big('N') } }, { method: 'tap', params: { bridge: big('B') } }, { method: 'x'.repeat(64) }]) {
            const r = await request({ id: 1, ...req });
            codes.push(r.ok ? 'ok' : r.error.code);
          }
        }
        console.log(JSON.stringify(codes));
      `,
        { SOCK: vnetd.socket },
      ),
    );
    expect(codes).toEqual(Array(3).fill(['EPERM', 'EPERM', 'EINVAL', 'ENOSYS']).flat());
    // the D-Bus line above opened nobody's window: the refusals in it are held back, and one
    // line at most is written when it is over
    const all = refusalsOf(NOBODY);
    expect(all.length).toBeLessThanOrEqual(2);
    if (all.length === 2) expect(all[1]!.time - all[0]!.time).toBeGreaterThanOrEqual(10_000);
    expect(Buffer.byteLength(vnetd.log) - before).toBeLessThan(2048);
    expect(Buffer.byteLength(vnetd.log) - logStart).toBeLessThan(64 * 1024);
  });

  it('the next refusal line, 10 s after the last, counts those held back', { timeout: 60_000 }, async () => {
    // refused requests every 200 ms until vnetd writes its next line about nobody
    const pest = asNobody(
      `${SOCKET_CLIENT}
      let stop = false; process.stdin.on('end', () => (stop = true)); process.stdin.resume();
      let n = 0;
      while (!stop) { await request({ id: 1, method: 'up', params: { name: 'default' } }); n++; await new Promise((r) => setTimeout(r, 200)); }
      console.log(JSON.stringify({ sent: n }));
    `,
      { SOCK: vnetd.socket },
    );
    const had = refusalsOf(NOBODY).length;
    let sent = 0;
    try {
      await waitFor('a further refusal line about nobody', () => refusalsOf(NOBODY).length > had, 30_000);
    } finally {
      ({ sent } = (await lastLine(pest)) as { sent: number });
    }
    const all = refusalsOf(NOBODY);
    const last = all[all.length - 1]!;
    expect(last).toMatchObject({ level: 40, msg: 'request refused', method: 'up' });
    expect(last.suppressed).toBeGreaterThan(0);
    // every refusal before the last line is a line or counted in a later one: the 3 D-Bus calls,
    // the 12 socket requests and the pest's first; none is counted twice
    const accounted = all.reduce((n, l) => n + 1 + (l.suppressed ?? 0), 0);
    expect(accounted).toBeGreaterThanOrEqual(3 + 12 + 1);
    expect(accounted).toBeLessThanOrEqual(3 + 12 + sent);
    // at most one line per 10 s all along, each short
    for (let i = 1; i < all.length; i++) expect(all[i]!.time - all[i - 1]!.time).toBeGreaterThanOrEqual(10_000);
    for (const l of all) expect(JSON.stringify(l).length).toBeLessThan(1024);
    expect(Buffer.byteLength(vnetd.log) - logStart).toBeLessThan(64 * 1024);
  });
});
