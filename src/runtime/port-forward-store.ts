/**
 * The forwards `vnet forward add` made: one small JSON file ($VNET_STATE_DIR/port-forwards.json,
 * written atomically), so they survive restarts and reboots, and merged into every definition
 * vnetd hands out (`merge`), so a network that is down takes them when it comes up and a running
 * one is reloaded with them.
 *
 * Bounded: at most MAX_RUNTIME_FORWARDS in all (each a few dozen bytes), a file larger than
 * MAX_FILE_BYTES is not read. A file vnetd cannot read or understand is reported (`problem`) and
 * left as it is: no run-time forward applies and none can be added or removed until an admin
 * moves it aside, so nothing is lost by overwriting it.
 */
import { readFileSync, statSync } from 'node:fs';
import type { DefinitionSet } from '../config/networks.js';
import { DefinitionError } from '../spec/parse.js';
import { describeForward, heldBy, isProto, MAX_RUNTIME_FORWARDS, portOf, type holderOf } from '../spec/port-forwards.js';
import type { NetworkSpec, PortForward } from '../spec/spec.js';
import { writeFileAtomic } from '../sys/atomic-file.js';

export type StoredForward = Omit<PortForward, 'origin'>;

const MAX_FILE_BYTES = 256 * 1024;

interface ForwardsFile {
  version: 1;
  /** network name → its forwards */
  networks: Record<string, StoredForward[]>;
}

export class PortForwardStoreError extends Error {
  override name = 'PortForwardStoreError';
  constructor(
    message: string,
    /** true: the store is full (not: its file cannot be used) */
    readonly full: boolean,
  ) {
    super(message);
  }
}

export class PortForwardStore {
  private forwards?: Map<string, StoredForward[]>;
  /** why the file cannot be used, once it was read */
  private trouble?: string;

  constructor(readonly file: string) {}

  /** Why the run-time forwards cannot be used now (undefined: they can). */
  problem(): string | undefined {
    this.load();
    return this.trouble;
  }

  /** The run-time forwards of one network, or of every network. */
  list(network: string): StoredForward[] {
    return [...(this.load().get(network) ?? [])];
  }

  networks(): string[] {
    return [...this.load().keys()];
  }

  count(): number {
    let n = 0;
    for (const l of this.load().values()) n += l.length;
    return n;
  }

  /** Keep `f` for `network` (the caller checked it is free); throws when the store is unusable or full. */
  async add(network: string, f: StoredForward): Promise<void> {
    const now = this.usable();
    if (this.count() >= MAX_RUNTIME_FORWARDS) throw new PortForwardStoreError(`vnet keeps at most ${MAX_RUNTIME_FORWARDS} forwards added at run time; remove some first`, true);
    const next = new Map(now);
    next.set(network, [...(now.get(network) ?? []), f]);
    await this.save(next);
  }

  /** Forget `network`'s forward of `proto` `hostPort`; the forward removed, or undefined when there was none. */
  async remove(network: string, proto: PortForward['proto'], hostPort: number): Promise<StoredForward | undefined> {
    const now = this.usable();
    const list = now.get(network) ?? [];
    const gone = list.find((f) => f.proto === proto && f.hostPort === hostPort);
    if (!gone) return undefined;
    const next = new Map(now);
    const rest = list.filter((f) => f !== gone);
    if (rest.length) next.set(network, rest);
    else next.delete(network);
    await this.save(next);
    return gone;
  }

  /** `spec` with its definition's forwards and then this store's for its network. */
  applyTo(spec: NetworkSpec): NetworkSpec {
    const own = (spec.portForwards ?? []).filter((f) => f.origin === 'definition');
    const runtime = this.trouble === undefined ? this.list(spec.name).map((f): PortForward => ({ ...f, origin: 'runtime' })) : [];
    const all = [...own, ...runtime];
    const { portForwards: _old, ...rest } = spec;
    return all.length ? { ...rest, portForwards: all } : rest;
  }

  /**
   * Every definition with its run-time forwards merged in. A host port is one forward's only:
   * run-time forwards were checked when added, so a definition that names a port one already
   * holds (another network's, or a run-time forward) is refused, naming the holder.
   */
  merge(set: DefinitionSet): DefinitionSet {
    this.load();
    const held = new Map<string, NonNullable<ReturnType<typeof holderOf>>>();
    const key = (f: Pick<PortForward, 'proto' | 'hostPort'>) => `${f.proto}/${f.hostPort}`;
    const networks = new Map<string, NetworkSpec>();
    for (const [name, spec] of set.networks) {
      const merged = this.applyTo(spec);
      networks.set(name, merged);
      for (const f of merged.portForwards ?? []) if (f.origin === 'runtime') held.set(key(f), { network: name, forward: f, source: spec.source });
    }
    const errors = new Map(set.errors);
    for (const name of [...networks.keys()].sort()) {
      const spec = networks.get(name)!;
      const clash = (spec.portForwards ?? [])
        .filter((f) => f.origin === 'definition')
        .map((f) => ({ f, h: held.get(key(f)) }))
        .find(({ f, h }) => h !== undefined && !(h.network === name && h.forward === f));
      if (clash) {
        networks.delete(name);
        errors.set(name, new DefinitionError(spec.source, 'forwards', describeForward(clash.f), `${clash.f.proto} host port ${clash.f.hostPort} is taken: ${heldBy(clash.h!)}`));
        continue;
      }
      for (const f of spec.portForwards ?? []) if (f.origin === 'definition') held.set(key(f), { network: name, forward: f, source: spec.source });
    }
    return { networks, errors };
  }

  private usable(): Map<string, StoredForward[]> {
    const m = this.load();
    if (this.trouble !== undefined) throw new PortForwardStoreError(this.trouble, false);
    return m;
  }

  private load(): Map<string, StoredForward[]> {
    if (this.forwards) return this.forwards;
    this.forwards = new Map();
    try {
      const size = statSync(this.file, { throwIfNoEntry: false })?.size;
      if (size === undefined) return this.forwards;
      if (size > MAX_FILE_BYTES) throw new Error(`larger than ${MAX_FILE_BYTES} bytes`);
      const v = JSON.parse(readFileSync(this.file, 'utf8')) as ForwardsFile;
      if (v?.version !== 1 || typeof v.networks !== 'object' || v.networks === null) throw new Error('unexpected shape');
      let n = 0;
      for (const [network, list] of Object.entries(v.networks)) {
        if (!Array.isArray(list)) throw new Error(`${JSON.stringify(network)} has no list of forwards`);
        this.forwards.set(network, list.map((f) => checked(f, network)));
        n += list.length;
      }
      if (n > MAX_RUNTIME_FORWARDS) throw new Error(`${n} forwards, more than ${MAX_RUNTIME_FORWARDS}`);
    } catch (err) {
      this.forwards = new Map();
      this.trouble = `${this.file} cannot be used (${(err as Error).message}): forwards added with \`vnet forward add\` do not apply; move it aside and restart vnetd`;
    }
    return this.forwards;
  }

  private async save(next: Map<string, StoredForward[]>): Promise<void> {
    const file: ForwardsFile = { version: 1, networks: Object.fromEntries([...next].sort(([a], [b]) => (a < b ? -1 : 1))) };
    await writeFileAtomic(this.file, `${JSON.stringify(file, null, 1)}\n`, { mode: 0o644 });
    this.forwards = next;
  }
}

function checked(f: unknown, network: string): StoredForward {
  const o = (f ?? {}) as Record<string, unknown>;
  const hostPort = portOf(o.hostPort);
  const guestPort = portOf(o.guestPort);
  if (!isProto(o.proto) || hostPort === undefined || guestPort === undefined || typeof o.guest !== 'string' || o.guest === '' || o.guest.length > 255)
    throw new Error(`a forward of ${JSON.stringify(network)} is malformed: ${JSON.stringify(f).slice(0, 120)}`);
  return { proto: o.proto, hostPort, guest: o.guest, guestPort };
}
