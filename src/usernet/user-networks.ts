/**
 * Networks users create themselves, within the admin's [user-networks] policy: who may, the pool
 * their subnets come from (through the same allocator as address = "auto", so neither picks what
 * the other has), the forward modes, and how many each. Every limit is checked here, in vnetd,
 * under one lock, so racing creates cannot pass a limit together. Bringing a network up and down
 * is the daemon's, as for any network; this keeps the records and the subnets.
 */
import type { Logger } from 'pino';
import { VnetError } from '../api/errors.js';
import { accountNameProblem } from '../config/names.js';
import type { UserForwardMode, UserNetworkPolicy } from '../config/user-policy.js';
import { confFilePath, leaseFilePath } from '../dhcp/dnsmasq.js';
import type { Identity } from '../identity/nss.js';
import type { PeerCred } from '../model.js';
import { cidrOf, contains, overlaps, parseIfAddress, parseSubnet, subnetOf, type Subnet } from '../net/ip.js';
import { credOf, networkAllows } from '../policy/access.js';
import type { HostAddressing } from '../reconcile/conflicts.js';
import { AllocationError, type SubnetAllocator } from '../runtime/allocator.js';
import { hostSubnets, userAllocationKey } from '../runtime/auto-subnets.js';
import type { NetworkSpec } from '../spec/spec.js';
import { removeFile } from '../sys/atomic-file.js';
import { Mutex } from '../sys/mutex.js';
import { ownerNameProblem, qualifiedName, userBridgeName, userNetworkNameProblem, userUla } from './names.js';
import { shortName } from './resolve.js';
import { userSpec } from './spec.js';
import { MAX_LISTED_USERS, type UserNetworkRecord, type UserNetworkStore } from './store.js';

export interface CreateRequest {
  name: string;
  /** "auto" (absent too) or a CIDR inside the pool */
  subnet?: string;
  forward?: string;
  dhcp?: boolean;
  /** "auto": a unique local /64 of its own */
  ipv6?: string;
  /** users who may get taps on it besides its owner (and root) */
  allowUsers?: string[];
}

export interface UserNetworksOptions {
  /** absent: nobody may create networks */
  policy: UserNetworkPolicy | undefined;
  /** where the policy is written (vnet.toml), for messages */
  policyFile: string;
  store: UserNetworkStore;
  allocator: SubnetAllocator;
  identity: Identity;
  /** the host's links, routes and addresses now */
  host(): Promise<HostAddressing>;
  /** every network vnet knows now (the admin's, users', running copies): their names, bridges and subnets are taken */
  networks(): NetworkSpec[];
  stateDir: string;
  runtimeDir: string;
  log: Logger;
}

const BRIDGE_ATTEMPTS = 16;

export class UserNetworks {
  private readonly mutex = new Mutex();
  private memo?: { from: UserNetworkRecord[]; specs: NetworkSpec[] };

  constructor(private readonly o: UserNetworksOptions) {}

  /** Every user network as a spec, named OWNER:NAME. */
  specs(): NetworkSpec[] {
    const records = this.o.store.all();
    const m = this.memo;
    if (m && m.from.length === records.length && m.from.every((r, i) => r === records[i])) return m.specs;
    const specs: NetworkSpec[] = [];
    for (const r of records) {
      try {
        specs.push(userSpec(r, sourceOf(r)));
      } catch (err) {
        // a record this vnetd cannot use (written by another version?) spoils nothing else
        this.o.log.error({ err, uid: r.uid, network: r.name }, 'a user network\'s record does not make a network; it is left out');
      }
    }
    this.memo = { from: records, specs };
    return specs;
  }

  /** Let go of subnets kept for user networks that have no record (a create cut short by a crash). */
  async prune(): Promise<void> {
    if (this.o.store.problem()) return;
    const keys = new Set(this.o.store.all().map((r) => userAllocationKey(r.uid, r.name)));
    for (const key of this.o.allocator.keys()) {
      if (key.startsWith('user:') && !keys.has(key)) {
        await this.o.allocator.release(key);
        this.o.log.info({ key }, 'released the subnet of a user network that was never recorded');
      }
    }
  }

  /** Create `req.name` for `caller`, within the policy; its spec. */
  async create(req: CreateRequest, caller: PeerCred): Promise<NetworkSpec> {
    const policy = this.o.policy;
    if (!policy) throw new VnetError('EPERM', `users may not create networks on this host: ${this.o.policyFile} has no [user-networks] table`);
    const storeProblem = this.o.store.problem();
    if (storeProblem) throw new VnetError('EIO', storeProblem);
    const allowed = await networkAllows({ allowUsers: policy.allowUsers, allowGroups: policy.allowGroups }, credOf(caller), this.o.identity);
    if (!allowed.allowed) throw new VnetError('EPERM', `uid ${caller.uid} may not create networks: not in allow-users or allow-groups of [user-networks] in ${this.o.policyFile}`);
    const user = await this.o.identity.userOf(caller.uid);
    if (user === undefined) throw new VnetError('EPERM', `uid ${caller.uid} has no user name (NSS knows none), and a network is named after its owner`);
    if (ownerNameProblem(user)) throw new VnetError('EPERM', `user name ${JSON.stringify(user)} ${ownerNameProblem(user)}: it cannot name a network's owner`);
    const np = userNetworkNameProblem(req.name);
    if (np) throw new VnetError('EINVAL', `network name ${JSON.stringify(req.name)} ${np}`);
    const forward = (req.forward ?? policy.forwardModes[0]!) as UserForwardMode;
    if (!policy.forwardModes.includes(forward))
      throw new VnetError('EPERM', `forward mode ${JSON.stringify(req.forward)} is not allowed for user networks (allowed: ${policy.forwardModes.join(', ')}; forward-modes in ${this.o.policyFile})`);
    if (req.ipv6 !== undefined && req.ipv6 !== 'auto') throw new VnetError('EINVAL', `ipv6 must be "auto" (a unique local /64 of the network's own), got ${JSON.stringify(req.ipv6)}`);
    const listed = await this.listed(req.allowUsers ?? [], caller.uid);
    const wanted = req.subnet === undefined || req.subnet === 'auto' ? 'auto' : requestedSubnet(req.subnet, policy);
    return this.mutex.run(async () => {
      const records = this.o.store.all();
      const mine = records.filter((r) => r.uid === caller.uid);
      if (mine.some((r) => r.name === req.name)) throw new VnetError('EEXIST', `you already have a network named "${req.name}"`);
      if (caller.uid !== 0 && mine.length >= policy.maxPerUser)
        throw new VnetError('EDQUOT', `uid ${caller.uid} has ${mine.length} network(s), the most one user may have (max-per-user = ${policy.maxPerUser} in ${this.o.policyFile}); delete one first`);
      const full = qualifiedName(user, req.name);
      if (records.some((r) => qualifiedName(r.user, r.name) === full)) throw new VnetError('EEXIST', `a network named "${full}" exists (of another uid once called ${user})`);
      const others = this.o.networks();
      const clash = others.find((s) => s.owner.kind === 'admin' && (s.name === req.name || s.bridge.name === req.name));
      if (clash) throw new VnetError('EEXIST', `"${req.name}" names the admin's network "${clash.name}" (or its bridge); choose another name`);
      const host = await this.o.host();
      const used = [...hostSubnets(host), ...others.flatMap((s) => s.addresses.filter((a) => a.family === 4).map(subnetOf))];
      const bridge = this.freeBridge(caller.uid, req.name, host, others);
      const key = userAllocationKey(caller.uid, req.name);
      const subnet = await this.allocate(key, wanted, policy, used);
      const rec: UserNetworkRecord = {
        uid: caller.uid,
        user,
        name: req.name,
        bridge,
        subnet: cidrOf(subnet),
        ...(req.ipv6 === 'auto' ? { address6: freeUla(caller.uid, req.name, others) } : {}),
        forward,
        dhcp: req.dhcp ?? false,
        allowUsers: listed,
        created: new Date().toISOString(),
      };
      try {
        userSpec(rec, sourceOf(rec)); // what cannot come up is never recorded
        await this.o.store.add(rec);
      } catch (err) {
        await this.o.allocator.release(key).catch(() => undefined);
        throw new VnetError('EIO', `could not record the network: ${(err as Error).message}`, { cause: err });
      }
      this.o.log.info({ network: full, uid: caller.uid, bridge, subnet: rec.subnet, forward }, 'user network created');
      return this.specs().find((s) => s.name === full)!;
    });
  }

  /**
   * Forget a user network (the daemon took it down first): its record, its subnet, its lease
   * and dnsmasq files. `down` runs between the record's removal and the rest: the daemon brings it
   * down there, and a failure puts the record back.
   */
  async remove(spec: NetworkSpec, down: () => Promise<void>): Promise<void> {
    if (spec.owner.kind !== 'user') throw new VnetError('EPERM', `"${spec.name}" is not a user network`);
    const { uid } = spec.owner;
    const name = shortName(spec);
    await this.mutex.run(async () => {
      const rec = this.o.store.all().find((r) => r.uid === uid && r.name === name);
      if (!rec) throw new VnetError('ENOENT', `no network named "${spec.name}"`);
      // the record goes first: nothing can bring it up again meanwhile
      await this.o.store.remove(uid, name);
      try {
        await down();
      } catch (err) {
        await this.o.store.add(rec);
        throw err;
      }
      await this.o.allocator.release(userAllocationKey(uid, name));
      for (const f of [leaseFilePath(this.o.stateDir, spec.name), confFilePath(this.o.runtimeDir, spec.name)]) {
        await removeFile(f).catch((err) => this.o.log.warn({ err, file: f }, 'could not remove a deleted network\'s file'));
      }
      this.o.log.info({ network: spec.name, uid }, 'user network deleted');
    });
  }

  /** The users `names` stand for (each must exist), the caller and duplicates left out. */
  private async listed(names: string[], owner: number): Promise<Array<{ user: string; uid: number }>> {
    if (names.length > MAX_LISTED_USERS) throw new VnetError('EINVAL', `at most ${MAX_LISTED_USERS} users may be listed, got ${names.length}`);
    const out: Array<{ user: string; uid: number }> = [];
    for (const user of names) {
      const p = accountNameProblem(user);
      if (p) throw new VnetError('EINVAL', `allow-users: ${JSON.stringify(user)} ${p}`);
      const uid = await this.o.identity.uidOf(user);
      if (uid === undefined) throw new VnetError('EINVAL', `allow-users: no user named "${user}"`);
      if (uid !== owner && !out.some((x) => x.uid === uid)) out.push({ user, uid });
    }
    return out;
  }

  private freeBridge(uid: number, name: string, host: HostAddressing, others: NetworkSpec[]): string {
    const taken = new Set([...host.links.map((l) => l.name), ...others.map((s) => s.bridge.name), ...this.o.store.all().map((r) => r.bridge)]);
    for (let i = 0; i < BRIDGE_ATTEMPTS; i++) {
      const b = userBridgeName(uid, name, i);
      if (!taken.has(b)) return b;
    }
    throw new VnetError('EADDRINUSE', `no free bridge name for "${name}" after ${BRIDGE_ATTEMPTS} tries`);
  }

  private async allocate(key: string, wanted: Subnet | 'auto', policy: UserNetworkPolicy, used: Subnet[]): Promise<Subnet> {
    try {
      if (wanted !== 'auto') {
        await this.o.allocator.claim(key, wanted, used);
        return wanted;
      }
      return (await this.o.allocator.allocate(key, policy.pool, policy.prefixLength, used)).subnet;
    } catch (err) {
      if (!(err instanceof AllocationError)) throw err;
      if (wanted !== 'auto') throw new VnetError('EADDRINUSE', `subnet ${err.message}`, { cause: err });
      throw new VnetError('EDQUOT', `no free /${policy.prefixLength} left in the user networks' pool ${cidrOf(policy.pool)}: every one is taken by a route, an address or another network`, { cause: err });
    }
  }
}

function sourceOf(r: UserNetworkRecord): string {
  return `created by ${r.user} (uid ${r.uid}) with vnet create`;
}

/** A CIDR a user asked for: a subnet of the pool's prefix length inside the pool. */
function requestedSubnet(text: string, policy: UserNetworkPolicy): Subnet {
  const s = parseSubnet(text);
  if (!s || s.family !== 4) throw new VnetError('EINVAL', `subnet must be "auto" or an IPv4 subnet without host bits such as "${cidrOf(policy.pool).replace(/\/\d+$/, '')}/${policy.prefixLength}", got ${JSON.stringify(text.slice(0, 64))}`);
  if (!(overlaps(s, policy.pool) && s.prefix >= policy.pool.prefix && contains(policy.pool, s.network)))
    throw new VnetError('EPERM', `subnet ${cidrOf(s)} is outside the user networks' pool ${cidrOf(policy.pool)}`);
  if (s.prefix !== policy.prefixLength) throw new VnetError('EPERM', `user networks are /${policy.prefixLength}s (prefix-length in [user-networks]), not /${s.prefix}`);
  return s;
}

function freeUla(uid: number, name: string, others: NetworkSpec[]): string {
  const taken = others.flatMap((s) => s.addresses.filter((a) => a.family === 6).map(subnetOf));
  for (let i = 0; i < BRIDGE_ATTEMPTS; i++) {
    const a = parseIfAddress(userUla(uid, name, i))!;
    if (!taken.some((t) => overlaps(t, subnetOf(a)))) return `${a.address}/${a.prefix}`;
  }
  throw new VnetError('EADDRINUSE', `no free unique local /64 for "${name}"`);
}
