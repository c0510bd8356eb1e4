/**
 * `vnet doctor [NET]`: what on this host stops vnet from working, each with its fix. Every check
 * is a pure judge over facts its own gatherer reads (the files beside this one); this file reads
 * what they share (definitions, vnet.toml, vnetd's status), runs the gatherers, and collects the
 * findings in a fixed order. It works without vnetd (the vnetd check says so, the rest still runs)
 * and as a user (each check says what it could not read). It changes nothing.
 */
import path from 'node:path';
import { VnetError } from '../api/errors.js';
import type { Ctx } from '../cli/commands.js';
import { readDefinitionSet, type DefinitionSet } from '../config/networks.js';
import type { Paths } from '../config/paths.js';
import { defaultSettings, loadSettings, type VnetSettings } from '../config/vnet-toml.js';
import type { NetworkStatus } from '../daemon/service.js';
import { judgeAppArmor, gatherAppArmor } from './apparmor.js';
import { gatherBinaries, judgeBinaries, searchPath, which } from './binaries.js';
import { foreignDropFound, gatherBrNetfilter, judgeBrNetfilter } from './br-netfilter.js';
import { gatherBridgeAcl, judgeBridgeAcl } from './bridge-acl.js';
import { gatherDnsPort, judgeDnsPort } from './dns-port.js';
import { failure, note, type Finding } from './finding.js';
import { gatherFirewalld, judgeFirewalld } from './firewalld.js';
import { gatherForeignDrops, judgeForeignDrops } from './foreign-drops.js';
import { gatherForwarding, judgeForwarding } from './forwarding.js';
import { gatherQemuConf, judgeQemuConf } from './qemu-conf.js';
import type { Scope } from './scope.js';
import { gatherSelinux, judgeSelinux } from './selinux.js';
import { gatherSubnets, judgeSubnets } from './subnets.js';
import { gatherTun, judgeTun } from './tun.js';
import { judgeVnetd } from './vnetd.js';

export interface DoctorOptions {
  paths: Paths;
  call: Ctx['call'];
  /** NET: a network name or its bridge's; undefined: every network */
  net?: string;
}

/** Definitions as vnetd would resolve them (address = "auto" as picked), and their errors. */
async function definitions(paths: Paths, settings: VnetSettings): Promise<{ set: DefinitionSet; errors: string[] }> {
  const errors: string[] = [];
  let set = readDefinitionSet(paths.networksDir);
  try {
    const [{ AutoSubnets }, { SubnetAllocator }] = await Promise.all([import('../runtime/auto-subnets.js'), import('../runtime/allocator.js')]);
    const silent = { info() {}, warn() {} } as unknown as ConstructorParameters<typeof AutoSubnets>[2];
    set = new AutoSubnets(new SubnetAllocator(path.join(paths.stateDir, 'allocations.json')), settings.autoPool, silent).resolveSet(set);
  } catch (err) {
    errors.push((err as Error).message);
  }
  for (const err of set.errors.values()) errors.push(err.message);
  return { set, errors };
}

async function status(call: Ctx['call']): Promise<Scope['status']> {
  try {
    const list: NetworkStatus[] = await call('list');
    return new Map(list.map((s) => [s.name, s]));
  } catch (err) {
    return { unreachable: err instanceof VnetError || err instanceof Error ? err.message : String(err) };
  }
}

/** A gatherer that throws is a note naming the check, never the end of doctor. */
async function guarded(check: string, fn: () => Promise<Finding[]>): Promise<Finding[]> {
  try {
    return await fn();
  } catch (err) {
    return [note(check, `could not check: ${err instanceof Error ? err.message : String(err)}`)];
  }
}

export async function doctor(opts: DoctorOptions): Promise<Finding[]> {
  const { paths } = opts;
  const early: Finding[] = [];
  let settings = defaultSettings();
  try {
    settings = loadSettings(paths.configDir);
  } catch (err) {
    early.push(failure('definitions', (err as Error).message, 'fix vnet.toml, then: sudo systemctl restart vnetd'));
  }
  const { set, errors } = await definitions(paths, settings);
  let networks = [...set.networks.values()];
  let definitionErrors = errors;
  if (opts.net !== undefined) {
    const one = set.networks.get(opts.net) ?? networks.find((s) => s.bridge.name === opts.net);
    if (!one) {
      const bad = set.errors.get(opts.net);
      if (!bad) throw new VnetError('ENOENT', `no network or bridge named "${opts.net}" (definitions live in ${paths.networksDir})`);
      definitionErrors = [bad.message];
    } else definitionErrors = [];
    networks = one ? [one] : [];
  }
  const scope: Scope = { networks, status: await status(opts.call), settings, paths };

  const dirs = searchPath();
  // nft as vnetd would find it (a user's PATH may lack /usr/sbin)
  const nft = (await which('nft', dirs)) ?? 'nft';
  const [binaries, forwarding, drops, brnf, dns, apparmor, tun, acl, qemu, firewalld, subnets] = await Promise.all([
    guarded('programs', async () => judgeBinaries(await gatherBinaries(scope, dirs), scope)),
    guarded('forwarding', async () => judgeForwarding(await gatherForwarding(), scope)),
    gatherForeignDrops({ nft }).then(
      (f) => ({ facts: f, findings: judgeForeignDrops(f, scope) }),
      (err: unknown) => ({ facts: undefined, findings: [note('foreign-drop', `could not check: ${(err as Error).message}`)] }),
    ),
    gatherBrNetfilter().catch(() => undefined),
    guarded('dns-port', async () => judgeDnsPort(await gatherDnsPort(), scope)),
    guarded('apparmor', async () => judgeAppArmor(await gatherAppArmor(), scope)),
    guarded('tun', async () => judgeTun(await gatherTun())),
    guarded('bridge-acl', async () => judgeBridgeAcl(await gatherBridgeAcl(scope), scope)),
    guarded('libvirt-helper', async () => judgeQemuConf(await gatherQemuConf())),
    guarded('firewalld', async () => judgeFirewalld(await gatherFirewalld(scope), scope)),
    guarded('subnets', async () => judgeSubnets(await gatherSubnets(scope, definitionErrors), scope)),
  ]);
  const brNetfilter = brnf ? judgeBrNetfilter(brnf, drops.facts ? foreignDropFound(drops.facts, scope) : false, scope) : [note('br-netfilter', 'could not check')];
  const selinux = await guarded('selinux', async () => judgeSelinux(await gatherSelinux(scope, await which('dnsmasq', dirs)), scope));
  return [...early, ...judgeVnetd(scope), ...binaries, ...forwarding, ...drops.findings, ...brNetfilter, ...dns, ...apparmor, ...selinux, ...tun, ...acl, ...qemu, ...firewalld, ...subnets];
}
