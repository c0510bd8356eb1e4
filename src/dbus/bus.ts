/**
 * The D-Bus front of VnetService, in the style of NetworkManager: the name
 * org.vnet.Vnet1, a Manager object at /org/vnet/Vnet1 with methods and signals, and
 * one read-only object per network at /org/vnet/Vnet1/Networks/<escaped name>.
 *
 * dbus-next carries the messages; dispatch is ours (one method handler for every
 * call to our paths) so that each call knows its sender, whose uid and pid come from
 * the bus (caller.ts), and so that introspection is made from the same tables that
 * answer (introspect.ts). Network objects are not registered one by one: a path is
 * a network when the service knows that name, so they always match the definitions.
 * Refused calls are logged at most once per uid per 10 s, shared with the socket, and every
 * logged field that carries the caller's bytes is cut (src/log).
 */
import dbus from 'dbus-next';
import type { Message, MessageBus } from 'dbus-next';
import type { Logger } from 'pino';
import { dbusErrorName, isRefusal, VnetError } from '../api/errors.js';
import { METHODS, type MethodDef } from '../api/methods.js';
import type { NetworkStatus, VnetService } from '../daemon/service.js';
import type { PeerCred } from '../model.js';
import { cut, errField } from '../log/cut.js';
import type { RateLimiter } from '../log/rate-limit.js';
import { refusalLimiter } from '../log/refusals.js';
import { bindingOf, BusError, type AnyBinding } from './methods.js';

/** Bytes of an error text a D-Bus error reply carries at most (as the socket API cuts its own). */
const MAX_ERROR_TEXT = 4096;
import { callerOf } from './caller.js';
import { BusRefusals, isRefusedBusError } from './refusals.js';
import { Announcer } from './signals.js';
import {
  introspectXml,
  MANAGER,
  NETWORK,
  networkProps,
  propertyVariants,
  signatureOf,
  type InterfaceSpec,
} from './introspect.js';
import {
  BUS_NAME,
  escapePathElement,
  MANAGER_IFACE,
  MANAGER_PATH,
  NETWORKS_PATH,
  networkNameOf,
  networkPath,
} from './names.js';

const { Message: Msg, Variant } = dbus;

const PROPERTIES_IFACE = 'org.freedesktop.DBus.Properties';
const INTROSPECTABLE_IFACE = 'org.freedesktop.DBus.Introspectable';
const NO_REPLY_EXPECTED = 1;

export interface DbusOptions {
  /** "system" for the system bus, or a D-Bus address such as "unix:path=/run/x/bus" */
  address: string;
  log: Logger;
  /** how long to wait for the bus to accept us, and then to grant the name, ms (default 5000) */
  connectTimeoutMs?: number;
  /** one refusal log line per uid per window (default: the one every front of vnetd shares) */
  refusals?: RateLimiter<number>;
}

export interface DbusHandle {
  /** our unique name on the bus (":1.7") */
  readonly uniqueName: string;
  close(): Promise<void>;
}


function busLabel(address: string): string {
  return address === 'system' ? 'the system bus' : `bus ${address}`;
}

const DEFAULT_TIMEOUT_MS = 5000;

/**
 * `work`, bounded: rejects with "no answer in MS ms" when it has not settled by then
 * (dbus-next calls have no timeout of their own, and are not rejected when the stream ends).
 */
async function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A connected bus. Errors after the connection is up are logged (once the stream has
 * ended, only the first); `lost` runs when the bus goes away (dbus-daemon stopped).
 */
function connect(opts: DbusOptions, lost: () => void): Promise<MessageBus> {
  const bus = opts.address === 'system' ? dbus.systemBus() : dbus.sessionBus({ busAddress: opts.address });
  const where = busLabel(opts.address);
  const ms = opts.connectTimeoutMs ?? DEFAULT_TIMEOUT_MS;
  let connected = false;
  let ended = false;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      bus.disconnect();
      reject(new Error(`could not connect to ${where}: no answer in ${ms} ms`));
    }, ms);
    bus.on('error', (err: unknown) => {
      if (!connected) {
        clearTimeout(timer);
        bus.disconnect();
        reject(new Error(`could not connect to ${where}: ${(err as Error)?.message ?? String(err)}`, { cause: err }));
      } else if (!ended) {
        opts.log.error({ err }, `D-Bus connection to ${where} failed`);
      }
    });
    // dbus-next does not surface the end of its stream on MessageBus; its connection does.
    (bus as unknown as { _connection: NodeJS.EventEmitter })._connection.once('end', () => {
      ended = true;
      if (connected) lost();
    });
    bus.once('connect', () => {
      connected = true;
      clearTimeout(timer);
      resolve(bus);
    });
  });
}


class VnetBus {
  private readonly announcer: Announcer;
  private closed = false;
  private readonly refusals: BusRefusals;

  constructor(
    private readonly bus: MessageBus,
    private readonly service: VnetService,
    private readonly log: Logger,
    refusals: RateLimiter<number>,
  ) {
    this.announcer = new Announcer(bus, service, log);
    this.refusals = new BusRefusals(bus, log, refusals);
  }

  async start(): Promise<void> {
    await this.announcer.start();
    this.bus.addMethodHandler(this.dispatch);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.bus.removeMethodHandler(this.dispatch);
    await this.announcer.close();
  }

  // ---- calls ----

  /** dbus-next's hook: true when the call is ours (answered later, asynchronously). */
  private readonly dispatch = (msg: Message): boolean => {
    const path = msg.path;
    const ours = path === '/' || MANAGER_PATH.startsWith(`${path}/`) || path === MANAGER_PATH || path.startsWith(`${MANAGER_PATH}/`);
    if (!ours) return false;
    // Peer (Ping, GetMachineId) is answered by dbus-next itself.
    if (msg.interface === 'org.freedesktop.DBus.Peer') return false;
    if (!msg.interface && (msg.member === 'Ping' || msg.member === 'GetMachineId')) return false;
    void this.answer(msg);
    return true;
  };

  private async answer(msg: Message): Promise<void> {
    try {
      const reply = await this.handle(msg);
      if (msg.flags & NO_REPLY_EXPECTED) return;
      this.bus.send(Msg.newMethodReturn(msg, reply.signature, reply.body));
    } catch (err) {
      let name: string;
      let text: string;
      if (err instanceof BusError) {
        name = err.errorName;
        text = err.message;
        if (isRefusedBusError(name)) void this.refusals.refused(msg, name, text);
      } else if (err instanceof VnetError) {
        name = dbusErrorName(err.code);
        text = err.message;
        if (isRefusal(err.code)) void this.refusals.refused(msg, name, text);
      } else {
        name = dbusErrorName('EIO');
        text = err instanceof Error ? err.message : String(err);
        this.log.error({ err: errField(err), path: cut(msg.path), member: cut(msg.member ?? ''), sender: msg.sender }, 'D-Bus call failed');
      }
      // error texts often quote the caller's input (a 10 MB name): the reply carries a bounded head of it.
      // dbus-next's typings say newError takes a string; it takes the call being answered.
      if (!(msg.flags & NO_REPLY_EXPECTED)) this.bus.send(Msg.newError(msg as unknown as string, name, cut(text, MAX_ERROR_TEXT)));
    }
  }

  private async handle(msg: Message): Promise<{ signature: string; body: unknown[] }> {
    const path = msg.path;
    const iface = msg.interface || undefined;
    if (iface === INTROSPECTABLE_IFACE || (!iface && msg.member === 'Introspect')) {
      this.expectSignature(msg, '');
      return { signature: 's', body: [await this.introspect(path)] };
    }
    if (iface === PROPERTIES_IFACE) return this.properties(msg);
    if (path === MANAGER_PATH && (iface === MANAGER_IFACE || !iface)) {
      const binding = bindingOf(msg.member);
      if (binding) {
        this.expectSignature(msg, signatureOf(binding.in));
        return { signature: signatureOf(binding.out), body: await this.managerCall(binding, msg) };
      }
    }
    if (!(await this.objectExists(path))) throw new BusError('org.freedesktop.DBus.Error.UnknownObject', `no object at ${path}`);
    if (iface && !this.interfacesAt(path).some((i) => i.name === iface))
      throw new BusError('org.freedesktop.DBus.Error.UnknownInterface', `object ${path} has no interface ${iface}`);
    throw new BusError('org.freedesktop.DBus.Error.UnknownMethod', `no method ${msg.member} on ${iface ?? 'any interface'} of ${path}`);
  }

  private expectSignature(msg: Message, signature: string): void {
    const got = msg.signature || '';
    if (got !== signature)
      throw new BusError(
        'org.freedesktop.DBus.Error.InvalidArgs',
        `${msg.interface ?? ''}.${msg.member} takes arguments of type "${signature}", got "${got}"`,
      );
  }

  /** A Manager method: its binding's API method, run for the caller the bus names. */
  private async managerCall(binding: AnyBinding, msg: Message): Promise<unknown[]> {
    const def = METHODS[binding.method] as MethodDef<unknown, unknown>;
    const caller = await this.caller(msg, binding.name);
    const params = binding.params(msg.body as unknown[]);
    const result = await def.run(this.service, params, caller);
    const body = binding.reply(result as never, params as never);
    const touched = binding.touches?.(result as never);
    if (def.access === 'admin') this.log.info({ sender: msg.sender, uid: caller.uid, pid: caller.pid, network: touched === undefined ? undefined : cut(touched) }, `D-Bus ${binding.name}`);
    if (touched !== undefined) this.announcer.refresh(touched);
    return body;
  }

  /** Who made the call, from the bus. Nothing is logged here: a call is logged once answered, its arguments cut. */
  private async caller(msg: Message, what: string): Promise<PeerCred> {
    if (!msg.sender) throw new VnetError('EPERM', `a call to ${what} came without a sender; refusing it`);
    const caller = await callerOf(this.bus, msg.sender);
    this.refusals.remember(msg, caller.uid);
    return caller;
  }

  // ---- objects, introspection, properties ----

  private interfacesAt(path: string): InterfaceSpec[] {
    if (path === MANAGER_PATH) return [MANAGER];
    if (networkNameOf(path) !== undefined) return [NETWORK];
    return [];
  }

  /** The network a path stands for, or undefined when the service knows no such network. */
  private async networkAt(path: string): Promise<NetworkStatus | undefined> {
    const name = networkNameOf(path);
    if (name === undefined) return undefined;
    try {
      return await this.service.status(name);
    } catch (err) {
      if (err instanceof VnetError && err.code === 'ENOENT') return undefined;
      throw err;
    }
  }

  private async objectExists(path: string): Promise<boolean> {
    if (path === '/' || path === MANAGER_PATH || path === NETWORKS_PATH || MANAGER_PATH.startsWith(`${path}/`)) return true;
    return (await this.networkAt(path)) !== undefined;
  }

  private async introspect(path: string): Promise<string> {
    if (path === NETWORKS_PATH) {
      return introspectXml([], (await this.service.list()).map((s) => escapePathElement(s.name)));
    }
    if (path === MANAGER_PATH) return introspectXml([MANAGER], ['Networks']);
    if (path === '/' || MANAGER_PATH.startsWith(`${path}/`)) {
      const rest = MANAGER_PATH.slice(path === '/' ? 1 : path.length + 1);
      return introspectXml([], [rest.split('/')[0]!]);
    }
    if (await this.networkAt(path)) return introspectXml([NETWORK], []);
    throw new BusError('org.freedesktop.DBus.Error.UnknownObject', `no object at ${path}`);
  }

  private async properties(msg: Message): Promise<{ signature: string; body: unknown[] }> {
    const signature = { Get: 'ss', GetAll: 's', Set: 'ssv' }[msg.member];
    if (!signature) throw new BusError('org.freedesktop.DBus.Error.UnknownMethod', `no method ${msg.member} on ${PROPERTIES_IFACE}`);
    this.expectSignature(msg, signature);
    const [iface, prop] = msg.body as [string, string | undefined];
    const path = msg.path;
    const specs = this.interfacesAt(path);
    const known = iface === '' ? specs : specs.filter((s) => s.name === iface);
    const status = specs.includes(NETWORK) ? await this.networkAt(path) : undefined;
    if (!status && !(await this.objectExists(path))) throw new BusError('org.freedesktop.DBus.Error.UnknownObject', `no object at ${path}`);
    if (msg.member === 'GetAll') {
      if (iface !== '' && known.length === 0)
        throw new BusError('org.freedesktop.DBus.Error.UnknownInterface', `object ${path} has no interface ${iface}`);
      return { signature: 'a{sv}', body: [status && known.includes(NETWORK) ? propertyVariants(networkProps(status)) : {}] };
    }
    const spec = known.flatMap((s) => s.properties).find((p) => p.name === prop);
    if (!spec || !prop || !status)
      throw new BusError('org.freedesktop.DBus.Error.UnknownProperty', `object ${path} has no property ${iface ? `${iface}.` : ''}${prop}`);
    if (msg.member === 'Set') throw new BusError('org.freedesktop.DBus.Error.PropertyReadOnly', `property ${prop} is read-only`);
    return { signature: 'v', body: [new Variant(spec.type, networkProps(status)[prop])] };
  }
}

/**
 * Connect to the bus, serve vnet's objects and take the name org.vnet.Vnet1 (last, so
 * no call arrives before the objects answer). Throws, naming the bus, when the bus
 * cannot be reached or the name is refused or taken.
 */
export async function startDbus(service: VnetService, opts: DbusOptions): Promise<DbusHandle> {
  const where = busLabel(opts.address);
  const ms = opts.connectTimeoutMs ?? DEFAULT_TIMEOUT_MS;
  let vnet: VnetBus | undefined;
  let lost = false;
  let rejectOnLoss: (err: Error) => void = () => undefined;
  /** rejects when the connection ends: a call pending then would never settle */
  const loss = new Promise<never>((_, reject) => (rejectOnLoss = reject));
  loss.catch(() => undefined); // only raced against; nobody may be waiting when it happens
  const bus = await connect(opts, () => {
    lost = true;
    rejectOnLoss(new Error('the connection ended'));
    opts.log.error({ bus: opts.address }, `D-Bus connection to ${where} lost: the D-Bus API is off until vnetd restarts (the socket still serves)`);
    void vnet?.close();
  });
  vnet = new VnetBus(bus, service, opts.log, opts.refusals ?? refusalLimiter());
  try {
    await vnet.start();
    let reply: number;
    try {
      reply = await withTimeout(Promise.race([bus.requestName(BUS_NAME, dbus.NameFlag.DO_NOT_QUEUE), loss]), ms);
    } catch (err) {
      const text = (err as { text?: string }).text ?? (err as Error).message;
      throw new Error(`could not own ${BUS_NAME} on ${where}: ${text}`, { cause: err });
    }
    if (reply !== dbus.RequestNameReply.PRIMARY_OWNER && reply !== dbus.RequestNameReply.ALREADY_OWNER)
      throw new Error(`could not own ${BUS_NAME} on ${where}: another connection owns it (is another vnetd running?)`);
  } catch (err) {
    await vnet.close();
    bus.disconnect();
    throw err;
  }
  const uniqueName = (bus as unknown as { name: string }).name;
  opts.log.info({ bus: opts.address, name: BUS_NAME, uniqueName }, 'D-Bus name owned');
  const v = vnet;
  return {
    uniqueName,
    async close() {
      await v.close();
      // On a dead connection dbus-next never settles the call: skip it, and bound it.
      if (!lost) await withTimeout(bus.releaseName(BUS_NAME), 1000).catch(() => undefined);
      bus.disconnect();
    },
  };
}
