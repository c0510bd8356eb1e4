/**
 * `forward add / remove / list` on vnetd's side: who may, what is refused (a port another
 * forward or a local listener holds, a guest outside the network, a network that takes no
 * forwards, too many), and the running network reloaded with its new forwards, so that the
 * change is one per-network firewall change (the reconciler's diff), never a rebuilt table.
 */
import type { Logger } from 'pino';
import { VnetError } from '../api/errors.js';
import type { DefinitionSet } from '../config/networks.js';
import type { PeerCred } from '../model.js';
import type { NetworkRuntime } from '../runtime/network-runtime.js';
import { PortForwardStoreError, type PortForwardStore, type StoredForward } from '../runtime/port-forward-store.js';
import { describeForward, guestAddress, heldBy, holderOf, MAX_FORWARDS_PER_NETWORK, modeProblem } from '../spec/port-forwards.js';
import type { NetworkSpec, PortForward } from '../spec/spec.js';
import type { Lock, Mutex } from '../sys/mutex.js';
import type { Holder } from '../sys/listeners.js';
import type { PortForwardInfo, PortForwardRequest } from './service.js';

export interface PortForwardDeps {
  store: PortForwardStore;
  runtime: NetworkRuntime;
  mutex: Mutex;
  log: Logger;
  /** every definition, run-time forwards merged in */
  definitions(): DefinitionSet;
  /** a network by name or bridge: its running copy, else its definition (throws ENOENT / EINVAL) */
  spec(name: string): NetworkSpec;
  requireAdmin(caller: PeerCred, what: string): Promise<void>;
  /** local sockets holding a host port */
  holders(proto: PortForward['proto'], port: number): Promise<Holder[]>;
}

export class PortForwards {
  constructor(private readonly d: PortForwardDeps) {}

  async add(name: string, req: PortForwardRequest, caller: PeerCred): Promise<PortForwardInfo> {
    // a host name or an address: anything longer is neither, and is not echoed back at length
    if (req.guest.length === 0 || req.guest.length > 253) throw new VnetError('EINVAL', `guest must be an IPv4 address or a [[hosts]] name of 1..253 characters, got ${req.guest.length}`);
    const f: StoredForward = { proto: req.proto, hostPort: req.hostPort, guest: req.guest, guestPort: req.guestPort ?? req.hostPort };
    await this.d.requireAdmin(caller, `add a port forward (${describeForward(f)}) to network "${name}"`);
    return this.d.mutex
      .run(async (lock) => {
        const spec = this.d.spec(name);
        const problem = modeProblem(spec);
        if (problem) throw new VnetError('EINVAL', problem);
        const where = guestAddress(spec, f.guest);
        if ('problem' in where) throw new VnetError('EINVAL', where.problem);
        const holder = holderOf(this.everySpec(), f.proto, f.hostPort);
        if (holder) throw new VnetError('EADDRINUSE', `${f.proto} host port ${f.hostPort} is taken: ${heldBy(holder)}`);
        if ((spec.portForwards ?? []).length >= MAX_FORWARDS_PER_NETWORK)
          throw new VnetError('EDQUOT', `network "${spec.name}" has ${MAX_FORWARDS_PER_NETWORK} forwards, as many as a network may have; remove one first`);
        const local = await this.d.holders(f.proto, f.hostPort);
        if (local.length)
          throw new VnetError('EADDRINUSE', `${f.proto} host port ${f.hostPort} is taken: a local listener holds it (${local.map((h) => `${h.local}, uid ${h.uid}`).join('; ')})`);
        await this.d.store.add(spec.name, f).catch(storeError);
        try {
          await this.reloadRunning(lock, spec.name);
        } catch (err) {
          await this.d.store.remove(spec.name, f.proto, f.hostPort);
          throw err;
        }
        this.d.log.info({ network: spec.name, uid: caller.uid, forward: describeForward(f) }, 'port forward added');
        return this.info(this.d.spec(spec.name), { ...f, origin: 'runtime' });
      });
  }

  async remove(name: string, proto: PortForward['proto'], hostPort: number, caller: PeerCred): Promise<void> {
    await this.d.requireAdmin(caller, `remove the port forward of ${proto} ${hostPort} from network "${name}"`);
    await this.d.mutex.run(async (lock) => {
      let spec: NetworkSpec | undefined;
      try {
        spec = this.d.spec(name);
      } catch (err) {
        // a network whose definition went away: its run-time forwards can still be removed
        if (!(err instanceof VnetError && err.code === 'ENOENT' && this.d.store.list(name).length)) throw err;
      }
      const net = spec?.name ?? name;
      const gone = await this.d.store.remove(net, proto, hostPort).catch(storeError);
      if (!gone) {
        const fixed = spec?.portForwards?.find((f) => f.origin === 'definition' && f.proto === proto && f.hostPort === hostPort);
        if (fixed) throw new VnetError('EINVAL', `network "${net}": ${describeForward(fixed)} is in its definition (${spec!.source}); remove it from [[forwards]] there and run \`vnet reload ${net}\``);
        throw new VnetError('ENOENT', `network "${net}" has no ${proto} forward of host port ${hostPort} (see \`vnet forward list ${net}\`)`);
      }
      try {
        await this.reloadRunning(lock, net);
      } catch (err) {
        await this.d.store.add(net, gone);
        throw err;
      }
      this.d.log.info({ network: net, uid: caller.uid, forward: describeForward(gone) }, 'port forward removed');
    });
  }

  async list(name: string | undefined): Promise<PortForwardInfo[]> {
    const specs = name === undefined ? this.everySpec() : [this.d.spec(name)];
    return specs.flatMap((s) => (s.portForwards ?? []).map((f) => this.info(s, f))).sort((a, b) => a.network.localeCompare(b.network) || a.proto.localeCompare(b.proto) || a.hostPort - b.hostPort);
  }

  /** The running networks' copies, and the definitions of the others: every forward there is. */
  private everySpec(): NetworkSpec[] {
    const running = this.d.runtime.all().map((r) => r.spec);
    const others = [...this.d.definitions().networks.values()].filter((s) => !running.some((r) => r.name === s.name));
    return [...running, ...others];
  }

  /** A running network (up or in standby) takes its new forwards now, through the reconciler. */
  private async reloadRunning(lock: Lock, name: string): Promise<void> {
    const r = this.d.runtime.get(name);
    if (r) await this.d.runtime.reload(lock, name, this.d.store.applyTo(r.spec));
  }

  private info(spec: NetworkSpec, f: PortForward): PortForwardInfo {
    const where = guestAddress(spec, f.guest);
    const r = this.d.runtime.get(spec.name);
    const resolved = 'ip' in where;
    return {
      network: spec.name,
      proto: f.proto,
      hostPort: f.hostPort,
      guest: f.guest,
      address: resolved ? where.ip : '',
      guestPort: f.guestPort,
      origin: f.origin,
      active: resolved && modeProblem(spec) === undefined && r?.state === 'up' && r.level === 'up',
      ...(resolved ? {} : { problem: where.problem }),
    };
  }
}

function storeError(err: unknown): never {
  if (err instanceof PortForwardStoreError) throw new VnetError(err.full ? 'EDQUOT' : 'EIO', err.message, { cause: err });
  throw err;
}
