/**
 * `vnet check`: every definition and vnet.toml read now, each valid network checked against the
 * host as it is (its links, routes and addresses, and the bridges vnet's journal says it made).
 * Changes nothing; needs no vnetd and no privilege. address = "auto" shows the subnet vnetd picked
 * for it, if it picked one yet.
 */
import path from 'node:path';
import { Rtnl } from '../netlink/rtnl.js';
import { hostProblems } from '../reconcile/host-check.js';
import { SubnetAllocator } from '../runtime/allocator.js';
import { AutoSubnets } from '../runtime/auto-subnets.js';
import { PortForwardStore } from '../runtime/port-forward-store.js';
import { StateFile } from '../runtime/state-file.js';
import { summary } from '../spec/parse.js';
import { readDefinitionSet, type DefinitionSet } from './networks.js';
import type { Paths } from './paths.js';
import { defaultSettings, loadSettings, type VnetSettings } from './vnet-toml.js';

export interface CheckReport {
  /** "NAME (SOURCE): SUMMARY" of each network with no problem */
  ok: string[];
  /** one line per problem, naming the file */
  errors: string[];
}

const silent = { info() {}, warn() {} } as unknown as ConstructorParameters<typeof AutoSubnets>[2];

export async function checkDefinitions(paths: Paths): Promise<CheckReport> {
  const errors: string[] = [];
  let settings: VnetSettings = defaultSettings();
  try {
    settings = loadSettings(paths.configDir);
  } catch (err) {
    errors.push((err as Error).message);
  }
  let set: DefinitionSet = readDefinitionSet(paths.networksDir);
  try {
    set = new AutoSubnets(new SubnetAllocator(path.join(paths.stateDir, 'allocations.json')), settings.autoPool, silent).resolveSet(set);
  } catch (err) {
    errors.push((err as Error).message);
  }
  // port forwards: a host port is one forward's only, as vnetd merges them (run-time ones included)
  const forwards = new PortForwardStore(path.join(paths.stateDir, 'port-forwards.json'));
  set = forwards.merge(set);
  const forwardTrouble = forwards.problem();
  if (forwardTrouble) errors.push(forwardTrouble);
  for (const err of set.errors.values()) errors.push(err.message);
  let owned: ReadonlyMap<string, number> = new Map();
  try {
    owned = (await new StateFile(path.join(paths.runtimeDir, 'state.json')).load()).journal.owned;
  } catch (err) {
    errors.push((err as Error).message);
  }
  const rtnl = new Rtnl();
  const ok: string[] = [];
  try {
    const [links, routes, addresses] = await Promise.all([rtnl.listLinks(), rtnl.listRoutes(), rtnl.listAddresses()]);
    for (const spec of set.networks.values()) {
      const problems = hostProblems(spec, { links, routes, addresses }, owned);
      if (problems.length) errors.push(...problems);
      else ok.push(`${spec.name} (${spec.source}): ${summary(spec)}`);
    }
  } finally {
    rtnl.close();
  }
  return { ok, errors };
}
