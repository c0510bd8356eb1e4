/**
 * Refused D-Bus calls in vnetd's log: one line per uid per window at most (the limiter the
 * socket shares), fields cut (src/log). The uid is the one the call's authorisation learnt,
 * or else asked of the bus for the sender and remembered (a unique name is never reused on a
 * bus), so a caller that reconnects for a new name still shares its uid's one line.
 */
import dbus from 'dbus-next';
import type { Message, MessageBus } from 'dbus-next';
import type { Logger } from 'pino';
import type { RateLimiter } from '../log/rate-limit.js';
import { logRefusal } from '../log/refusals.js';

/** D-Bus errors that say the call itself was wrong: refusals, as the service's own are (isRefusal). */
const REFUSED_NAMES = new Set(
  ['InvalidArgs', 'UnknownMethod', 'UnknownObject', 'UnknownInterface', 'UnknownProperty', 'PropertyReadOnly'].map((n) => `org.freedesktop.DBus.Error.${n}`),
);

export function isRefusedBusError(errorName: string): boolean {
  return REFUSED_NAMES.has(errorName);
}

/** senders whose uid is remembered */
const MAX_KNOWN_SENDERS = 256;
const LOOKUP_TIMEOUT_MS = 5000;

export class BusRefusals {
  /** the uid of the caller of a call being answered, once its authorisation learnt it */
  private readonly callers = new WeakMap<Message, number>();
  private readonly senderUids = new Map<string, number>();

  constructor(
    private readonly bus: MessageBus,
    private readonly log: Logger,
    private readonly limiter: RateLimiter<number>,
  ) {}

  /** The caller of `msg` is `uid` (as its authorisation found). */
  remember(msg: Message, uid: number): void {
    this.callers.set(msg, uid);
  }

  /** Log that `msg` was refused with `errorName` and `text`. */
  async refused(msg: Message, errorName: string, text: string): Promise<void> {
    const uid = this.callers.get(msg) ?? (await this.uidOf(msg.sender));
    const fields = { sender: msg.sender, path: msg.path, member: `${msg.interface ?? ''}.${msg.member ?? ''}`, error: errorName, reason: text };
    logRefusal(this.log, this.limiter, uid, fields, 'D-Bus call refused');
  }

  /** The uid of bus peer `sender`, asked of the bus (and remembered); -1 when the bus cannot say. */
  private async uidOf(sender: string | undefined): Promise<number> {
    if (!sender) return -1;
    const known = this.senderUids.get(sender);
    if (known !== undefined) return known;
    const ask = this.bus.call(
      new dbus.Message({
        destination: 'org.freedesktop.DBus',
        path: '/org/freedesktop/DBus',
        interface: 'org.freedesktop.DBus',
        member: 'GetConnectionUnixUser',
        signature: 's',
        body: [sender],
      }),
    );
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), LOOKUP_TIMEOUT_MS)));
    let uid = -1;
    try {
      const reply = await Promise.race([ask, late]);
      if (typeof reply?.body[0] === 'number') uid = reply.body[0];
    } catch {
      return -1; // gone already: its refusals share the key of unknown callers
    } finally {
      clearTimeout(timer);
    }
    if (uid === -1) return -1;
    if (this.senderUids.size >= MAX_KNOWN_SENDERS) this.senderUids.delete(this.senderUids.keys().next().value!);
    this.senderUids.set(sender, uid);
    return uid;
  }
}
