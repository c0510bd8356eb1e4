/**
 * The write-ahead record of a bridge being created (`pending` in state.json, written before
 * the create-bridge step and cleared after it): a vnetd killed in between leaves that record,
 * and the next one must tell its own half-made bridge (a bridge of that name carrying the MAC
 * vnet gives it) from an admin's bridge of the same name, which it never adopts nor deletes.
 * The record is made for real: vnetd SIGKILLs itself at the failpoint on either side of the step.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bridgeMac } from '../../src/desired/contributors/link.js';
import { cleanupAll, createNetns, pidsWithArg, waitFor, type Netns } from '../support/netns.js';
import { Vnetd, vnetEnv, type VnetEnv } from '../support/vnetd.js';

let host: Netns;
let env: VnetEnv;
let vnetd: Vnetd | undefined;

interface KernelLink {
  ifname: string;
  ifindex: number;
  address: string;
  flags: string[];
}

async function virbr0(): Promise<KernelLink | undefined> {
  return (JSON.parse(await host.run('ip', ['-j', 'link', 'show'])) as KernelLink[]).find((l) => l.ifname === 'virbr0');
}

async function addresses(): Promise<string[]> {
  const [link] = JSON.parse(await host.run('ip', ['-j', '-4', 'addr', 'show', 'dev', 'virbr0'])) as Array<{ addr_info: Array<{ local: string }> }>;
  return (link?.addr_info ?? []).map((a) => a.local);
}

function dnsmasqs(): number[] {
  const checks = new Set(pidsWithArg('--test'));
  return pidsWithArg(`--conf-file=${path.join(env.VNET_RUNTIME_DIR, 'dnsmasq', 'default.conf')}`).filter((pid) => !checks.has(pid));
}

async function start(extra: Record<string, string> = {}): Promise<Vnetd> {
  await vnetd?.stop();
  vnetd = await new Vnetd(host, { ...env, ...extra }).start();
  return vnetd;
}

/** vnetd SIGKILLs itself at `up:POINT` of `vnet up default`; the record it leaves is returned. */
async function crashAt(point: string): Promise<{ pending?: string[]; owned: Record<string, number> }> {
  const d = await start({ VNET_FAILPOINT: `up:${point}` });
  await d.call('up', { name: 'default' }).catch(() => undefined);
  await waitFor('vnetd to die', () => !d.alive());
  return JSON.parse(readFileSync(path.join(env.VNET_RUNTIME_DIR, 'state.json'), 'utf8'));
}

beforeEach(async () => {
  host = await createNetns('vrp');
  env = vnetEnv();
});

afterEach(async () => {
  await vnetd?.stop('SIGKILL');
  vnetd = undefined;
  await cleanupAll();
});

afterAll(async () => {
  await cleanupAll();
});

describe('a bridge whose creation was pending when vnetd died', () => {
  it('an admin’s bridge of that name, without vnet’s MAC, is never adopted nor deleted; vnet builds its own once it is gone', async () => {
    // killed before the bridge was made: the record says "pending", the kernel has no virbr0
    expect(await crashAt('before:create-bridge')).toMatchObject({ pending: ['virbr0'], owned: {} });
    expect(await virbr0()).toBeUndefined();
    // meanwhile the admin makes a bridge of that name
    await host.run('ip', ['link', 'add', 'virbr0', 'type', 'bridge']);
    const admins = (await virbr0())!;
    expect(admins.address).not.toBe(bridgeMac('virbr0'));

    const untouched = async () => {
      const now = await virbr0();
      expect({ ifindex: now?.ifindex, mac: now?.address, up: now?.flags.includes('UP') }).toEqual({ ifindex: admins.ifindex, mac: admins.address, up: false });
      expect(await addresses()).toEqual([]);
      expect((await host.tryRun('nft', ['list', 'table', 'inet', 'vnet'])).exitCode).not.toBe(0);
      expect(dnsmasqs()).toEqual([]);
    };
    // the restart reads the record (and would bring the network it was starting up again)
    const d = await start();
    await untouched();
    expect(((await d.call('status', { name: 'default' })) as { state: string }).state).not.toBe('up');
    const refused = await d.cli(['up', 'default']);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toMatch(/interface virbr0 already exists and was not created by vnet/);
    await untouched();
    // and a second restart (the record has been rewritten by the first) changes nothing either
    await start();
    await untouched();

    // the admin deletes theirs: vnet makes its own, with its MAC
    await host.run('ip', ['link', 'del', 'virbr0']);
    expect(await vnetd!.call('up', { name: 'default' })).toMatchObject({ state: 'up' });
    expect((await virbr0())?.address).toBe(bridgeMac('virbr0'));
    expect(await addresses()).toEqual(['192.168.122.1']);
    expect(dnsmasqs()).toHaveLength(1);
  });

  it('a bridge of that name carrying vnet’s MAC (made just before the crash) is adopted: the same link is brought up', async () => {
    // killed right after the bridge was made, before it was recorded as owned
    expect(await crashAt('after:create-bridge')).toMatchObject({ pending: ['virbr0'], owned: {} });
    const made = (await virbr0())!;
    expect(made.address).toBe(bridgeMac('virbr0'));

    const d = await start();
    // the network was being started: the restart (reconcile runs before vnetd answers) finishes the job on the same link
    expect(((await d.call('status', { name: 'default' })) as { state: string }).state, d.log.slice(-2000)).toBe('up');
    expect((await virbr0())?.ifindex).toBe(made.ifindex);
    expect(await addresses()).toEqual(['192.168.122.1']);
    expect(dnsmasqs()).toHaveLength(1);
    // and it is vnet's to delete
    expect(await d.call('down', { name: 'default' })).toMatchObject({ state: 'down' });
    expect(await virbr0()).toBeUndefined();
  });
});
