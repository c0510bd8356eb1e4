/**
 * `mtu` applies to the bridge and every tap on it, with real taps handed out through the helper:
 * a tap copies the bridge's MTU when it is attached, and when the definition's MTU changes (here
 * across a vnetd restart, as an admin editing the file would) the bridge and the taps already on
 * it follow, while the bridge's other ports are left alone.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handoff, type Handoff } from '../support/handoff.js';
import { cleanupAll, hostAndWan, type Netns } from '../support/netns.js';
import { Vnetd, vnetEnv, type VnetEnv } from '../support/vnetd.js';

let host: Netns;
let env: VnetEnv;
let vnetd: Vnetd;
const held: Handoff[] = [];

const mtuOf = async (dev: string) => (JSON.parse(await host.run('ip', ['-j', 'link', 'show', 'dev', dev]))[0] as { mtu: number }).mtu;
const define = (mtu: number) => writeFileSync(path.join(env.VNET_CONFIG_DIR, 'networks', 'office.toml'), `bridge = "vnoff0"\naddress = "10.30.0.1/24"\nmtu = ${mtu}\n`);

async function tap(): Promise<string> {
  const h = await handoff('vnoff0', { runtimeDir: env.VNET_RUNTIME_DIR, hold: true });
  held.push(h);
  expect(h.result, h.result.stderr).toMatchObject({ exit: 0, nfds: 1 });
  return h.result.tap!;
}

beforeAll(async () => {
  ({ host } = await hostAndWan());
  env = vnetEnv();
  define(1400);
  vnetd = await new Vnetd(host, env).start();
});

afterAll(async () => {
  for (const h of held) await h.release().catch(() => undefined);
  await vnetd?.stop();
  await cleanupAll();
});

describe('mtu', () => {
  it('the bridge has the definition\'s MTU, and a tap gets it too (not the kernel\'s 1500)', async () => {
    const t = await tap();
    expect(await mtuOf('vnoff0')).toBe(1400);
    expect(await mtuOf(t)).toBe(1400);
  });

  it('a changed MTU reaches the bridge and the taps already on it, and the next tap has it', async () => {
    const before = await tap();
    await host.run('ip', ['link', 'add', 'vport', 'type', 'veth', 'peer', 'name', 'vpeer']);
    await host.run('ip', ['link', 'set', 'vport', 'mtu', '1450', 'master', 'vnoff0']);
    await vnetd.stop();
    define(1300);
    await vnetd.start();
    expect(await mtuOf('vnoff0')).toBe(1300);
    expect(await mtuOf(before)).toBe(1300);
    expect(await mtuOf(held[0]!.result.tap!)).toBe(1300);
    expect(await mtuOf('vport')).toBe(1450); // not a tap: its owner's
    expect(await mtuOf(await tap())).toBe(1300);
  });
});
