/**
 * Service events as D-Bus signals: the Manager's NetworkStateChanged, TapAdded,
 * TapRemoved, LeaseAdded, LeaseExpired and SubnetConflict, and PropertiesChanged on a
 * network object for each of its properties that changed.
 */
import dbus from 'dbus-next';
import type { MessageBus } from 'dbus-next';
import type { Logger } from 'pino';
import type { NetworkStatus, ServiceEvent, VnetService } from '../daemon/service.js';
import { Mutex } from '../sys/mutex.js';
import { isQualified } from '../usernet/names.js';
import { MANAGER, NETWORK, networkProps, propertyVariants, signatureOf, type NetworkProps } from './introspect.js';
import { MANAGER_IFACE, MANAGER_PATH, NETWORK_IFACE, networkPath } from './names.js';

/** The signature of each Manager signal, by name. */
const MANAGER_SIGNATURES = new Map(MANAGER.signals.map((s) => [s.name, signatureOf(s.args)]));

export class Announcer {
  /** property values last announced (or first seen) per network */
  private readonly known = new Map<string, NetworkProps>();
  /** property announcements, one at a time in event order; a failed one does not stop the next */
  private readonly queue = new Mutex();
  private unsubscribe?: () => void;
  private closed = false;

  constructor(
    private readonly bus: MessageBus,
    private readonly service: VnetService,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    for (const s of await this.service.list()) this.known.set(s.name, networkProps(s));
    this.unsubscribe = this.service.subscribe((e) => this.onEvent(e));
  }

  /** Stop announcing; resolves once queued announcements are out. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe?.();
    await this.queue.run(async () => undefined);
  }

  /**
   * Announce with PropertiesChanged what changed on a network object. Runs one at a
   * time in event order; `override` carries values the event itself reported (a state
   * read back later could already be the next one, and skip this transition).
   */
  refresh(name: string, override: NetworkProps = {}): void {
    void this.queue
      .run(() => this.announceChanges(name, override))
      .catch((err) => this.log.error({ err, network: name }, 'could not announce property changes'));
  }

  private async announceChanges(name: string, override: NetworkProps): Promise<void> {
    if (this.closed) return;
    let status: NetworkStatus;
    try {
      status = await this.service.status(name);
    } catch {
      return; // the definition went away: nothing left to describe
    }
    const now = { ...networkProps(status), ...override };
    const before = this.known.get(name);
    this.known.set(name, now);
    const changed: NetworkProps = {};
    for (const p of NETWORK.properties) {
      if (p.emits === 'const') continue;
      if (before ? before[p.name] !== now[p.name] : p.emits === 'true') changed[p.name] = now[p.name]!;
    }
    if (Object.keys(changed).length === 0) return;
    this.send(networkPath(name), 'org.freedesktop.DBus.Properties', 'PropertiesChanged', 'sa{sv}as', [
      NETWORK_IFACE,
      propertyVariants(changed),
      [],
    ]);
  }

  private onEvent(e: ServiceEvent): void {
    // a user's network (OWNER:NAME) is theirs and root's to see: never broadcast on the bus
    if (isQualified(e.type === 'network-state' ? e.name : e.network)) return;
    switch (e.type) {
      case 'network-state':
        this.manager('NetworkStateChanged', [e.name, e.state, e.reason ?? '']);
        this.refresh(e.name, { State: e.state, Reason: e.reason ?? '' });
        return;
      case 'tap-added':
      case 'tap-removed':
        this.manager(e.type === 'tap-added' ? 'TapAdded' : 'TapRemoved', [e.network, e.tap.name, e.tap.uid, e.tap.pid]);
        this.refresh(e.network);
        return;
      case 'lease-added':
        this.manager('LeaseAdded', [e.network, e.lease.mac, e.lease.ip, e.lease.hostname]);
        this.refresh(e.network);
        return;
      case 'lease-removed':
        this.manager('LeaseExpired', [e.network, e.lease.mac, e.lease.ip]);
        this.refresh(e.network);
        return;
      case 'subnet-conflict':
        this.manager('SubnetConflict', [e.network, e.conflict?.subnet ?? '', e.conflict?.interface ?? '']);
        return;
    }
  }

  /** Runs inside the service's event listener: logs, never throws. */
  private manager(member: string, body: unknown[]): void {
    const signature = MANAGER_SIGNATURES.get(member);
    if (signature === undefined) {
      this.log.error({ member }, `${MANAGER_IFACE} has no signal ${member}; not sent`);
      return;
    }
    this.send(MANAGER_PATH, MANAGER_IFACE, member, signature, body);
  }

  private send(path: string, iface: string, member: string, signature: string, body: unknown[]): void {
    if (this.closed) return;
    try {
      this.bus.send(dbus.Message.newSignal(path, iface, member, signature, body));
    } catch (err) {
      this.log.error({ err, path, member }, 'could not send D-Bus signal');
    }
  }
}
