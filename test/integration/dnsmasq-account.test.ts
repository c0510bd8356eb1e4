/**
 * vnet's dnsmasq runs as the system account vnet-dnsmasq, shared with no other service:
 * a process running as nobody can no longer stop or kill it. A missing account makes `vnet
 * up` (and an on-demand bring-up) fail naming it and the command that creates it, leaving
 * nothing behind. The real vnetd, CLI and helper, in throwaway namespaces.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handoff } from '../support/handoff.js';
import { procStatus } from '../support/proc.js';
import { cleanupAll, createNetns, hostAndWan, pidsWithArg, type Netns } from '../support/netns.js';
import { Vnetd, vnetEnv } from '../support/vnetd.js';

const CAP_NET_ADMIN = 1n << 12n;
const MISSING = 'vnet-test-noacct';
const NET = 'bridge = "vnacc0"\naddress = "10.61.0.1/24"\ndhcp-range = ["10.61.0.10", "10.61.0.99"]\non-demand = true\nidle-down = 30\n';


let host: Netns;

beforeAll(async () => {
  ({ host } = await hostAndWan());
});

afterAll(async () => {
  await cleanupAll();
});

describe('dnsmasq runs as vnet-dnsmasq', () => {
  let vnetd: Vnetd;

  beforeAll(async () => {
    const env = vnetEnv();
    writeFileSync(path.join(env.VNET_CONFIG_DIR, 'networks', 'acc.toml'), NET);
    vnetd = await new Vnetd(host, env).start();
    const r = await vnetd.cli(['up', 'acc']);
    expect(r.exitCode, r.stderr).toBe(0);
  });

  afterAll(async () => {
    await vnetd?.cli(['down', 'acc', '--force']);
    await vnetd?.stop();
  });

  it('with its uid and gid, and no capability but CAP_NET_ADMIN', () => {
    const [pid] = vnetd.children('dnsmasq');
    expect(pid, vnetd.log).toBeDefined();
    const [, , uid, gid] = execFileSync('getent', ['passwd', 'vnet-dnsmasq'], { encoding: 'utf8' }).split(':');
    expect(Number(uid)).not.toBe(65534);
    const st = procStatus(pid!);
    expect(st.Uid).toBe(`${uid}\t${uid}\t${uid}\t${uid}`);
    expect(st.Gid).toBe(`${gid}\t${gid}\t${gid}\t${gid}`);
    expect(st.Groups).toBe('');
    // no-ping: DHCP needs CAP_NET_ADMIN only (no CAP_NET_RAW)
    expect(BigInt(`0x${st.CapEff}`)).toBe(CAP_NET_ADMIN);
    expect(BigInt(`0x${st.CapPrm}`)).toBe(CAP_NET_ADMIN);
  });

  it('a process running as nobody can neither stop nor kill it (EPERM)', async () => {
    const [pid] = vnetd.children('dnsmasq');
    try {
      for (const sig of ['STOP', 'KILL']) {
        const r = await execa('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '/bin/kill', `-${sig}`, String(pid)], { reject: false });
        expect(r.exitCode, `kill -${sig} as nobody`).not.toBe(0);
        expect(r.stderr).toMatch(/Operation not permitted/);
      }
      expect(procStatus(pid!).State).toMatch(/^S/);
      expect(vnetd.children('dnsmasq')).toEqual([pid]);
    } finally {
      // had it worked, the network must not stay frozen for the next tests
      process.kill(pid!, 'SIGCONT');
    }
    // still serving: the network is up and its dnsmasq unchanged
    const s = (await vnetd.call('status', { name: 'acc' })) as { state: string };
    expect(s.state).toBe('up');
  });
});

describe('a missing account', () => {
  let ns: Netns;
  let vnetd: Vnetd;

  beforeAll(async () => {
    expect(() => execFileSync('getent', ['passwd', MISSING])).toThrow();
    ns = await createNetns('vnoacc');
    const env = vnetEnv({ VNET_DNSMASQ_USER: MISSING });
    writeFileSync(path.join(env.VNET_CONFIG_DIR, 'networks', 'acc.toml'), NET);
    vnetd = await new Vnetd(ns, env).start();
  });

  afterAll(async () => {
    await vnetd?.stop();
  });

  async function nothingMade() {
    const links = (await ns.links()).map((l) => l.ifname);
    expect(links).not.toContain('vnacc0');
    expect(await ns.taps()).toEqual([]);
    expect((await ns.tryRun('nft', ['list', 'table', 'inet', 'vnet'])).stdout).not.toMatch(/10\.61\.0\./);
    expect(vnetd.children('dnsmasq')).toEqual([]);
    const conf = path.join(vnetd.env.VNET_RUNTIME_DIR, 'dnsmasq', 'acc.conf');
    expect(existsSync(conf)).toBe(false);
    expect(pidsWithArg(`--conf-file=${conf}`)).toEqual([]);
    const s = (await vnetd.call('status', { name: 'acc' })) as { state: string };
    expect(s.state).toBe('down');
  }

  it('`vnet up` fails naming the account and the command that creates it; nothing is left', async () => {
    const r = await vnetd.cli(['up', 'acc']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`the system account "${MISSING}" that dnsmasq runs as does not exist`);
    expect(r.stderr).toContain(
      `create it with: useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --user-group ${MISSING}`,
    );
    await nothingMade();
  });

  it('an on-demand bring-up (a VM asking for a tap) fails the same way; nothing is left', async () => {
    const h = await handoff('vnacc0', { runtimeDir: vnetd.env.VNET_RUNTIME_DIR });
    expect(h.result.exit).not.toBe(0);
    expect(h.result.stderr).toContain(`the system account "${MISSING}" that dnsmasq runs as does not exist`);
    await nothingMade();
    expect(vnetd.alive()).toBe(true);
  });
});
