/**
 * The one table of vnetd's API: each method's parameters (checked here, whatever front they came
 * by), its result, who may call it, and what it does on the service. The socket server, the
 * D-Bus adapter (src/dbus/methods.ts) and the client are driven by it; a new method is a new
 * entry. Who-may-call is enforced by the service itself (so every front gets the same answer);
 * `access` here documents it for `vnet help` and the README.
 */
import type { LeasePage } from '../dhcp/lease-page.js';
import type { NetworkStatus, PortForwardInfo, ReloadResult, VnetService } from '../daemon/service.js';
import type { PeerCred } from '../model.js';
import { VnetError } from './errors.js';

export type Access = 'anyone' | 'admin';

type Raw = Record<string, unknown>;

export interface MethodDef<P, R> {
  summary: string;
  access: Access;
  /** check the raw parameters; throws VnetError EINVAL naming the parameter */
  params(raw: Raw): P;
  run(svc: VnetService, p: P, caller: PeerCred): Promise<R>;
  /** the result carries an fd (TapReply.fd), sent with SCM_RIGHTS beside the reply */
  passesFd?: true;
}

function def<P, R>(m: MethodDef<P, R>): MethodDef<P, R> {
  return m;
}

// ---- parameter checks ----

function bad(key: string, want: string, got: unknown): VnetError {
  const shown = got === undefined ? 'nothing' : typeof got === 'string' ? `a string of ${got.length} characters` : typeof got;
  return new VnetError('EINVAL', `parameter \`${key}\` must be ${want}, got ${shown}`);
}

function str(raw: Raw, key: string): string {
  const v = raw[key];
  if (typeof v !== 'string') throw bad(key, 'a string', v);
  return v;
}

function optStr(raw: Raw, key: string): string | undefined {
  return raw[key] === undefined || raw[key] === null ? undefined : str(raw, key);
}

function optBool(raw: Raw, key: string): boolean | undefined {
  const v = raw[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw bad(key, 'true or false', v);
  return v;
}

function port(raw: Raw, key: string): number {
  const v = raw[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) throw bad(key, 'a port 1..65535', v);
  return v;
}

function optPort(raw: Raw, key: string): number | undefined {
  return raw[key] === undefined || raw[key] === null ? undefined : port(raw, key);
}

function proto(raw: Raw, key: string): 'tcp' | 'udp' {
  const v = raw[key];
  if (v !== 'tcp' && v !== 'udp') throw bad(key, '"tcp" or "udp"', v);
  return v;
}

/** A list of at most 32 short strings (user names), or nothing. */
function optNames(raw: Raw, key: string): string[] | undefined {
  const v = raw[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.length > 32 || !v.every((x) => typeof x === 'string' && x.length <= 64)) throw bad(key, 'an array of at most 32 user names', v);
  return v as string[];
}

/** The keys that are set (exactOptionalPropertyTypes: absent, not undefined). */
function strip<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

// ---- the table ----

export interface TapReply {
  tap: string;
  /** the tap's fd, passed with SCM_RIGHTS on the reply, not in its JSON */
  fd: number;
}

export const METHODS = {
  ping: def({
    summary: 'is vnetd there: its pid',
    access: 'anyone',
    params: () => ({}),
    run: async () => ({ pong: true as const, pid: process.pid }),
  }),
  whoami: def({
    summary: 'the caller as vnetd sees it (kernel credentials)',
    access: 'anyone',
    params: () => ({}),
    run: async (_svc, _p, caller) => caller,
  }),
  list: def({
    summary: 'every network the caller may see: state, bridge, subnet, leases, taps',
    access: 'anyone',
    params: () => ({}),
    run: (svc, _p, caller): Promise<NetworkStatus[]> => svc.list(caller),
  }),
  status: def({
    summary: 'one network, named by its name or its bridge',
    access: 'anyone',
    params: (r) => ({ name: str(r, 'name') }),
    run: (svc, p, caller) => svc.status(p.name, caller),
  }),
  up: def({
    summary: 'bring a network up and keep it up',
    access: 'admin',
    params: (r) => ({ name: str(r, 'name') }),
    run: (svc, p, caller) => svc.up(p.name, caller),
  }),
  down: def({
    summary: 'take a network down (refused while taps are in use, unless force)',
    access: 'admin',
    params: (r) => ({ name: str(r, 'name'), force: optBool(r, 'force') ?? false }),
    run: (svc, p, caller) => svc.down(p.name, caller, { force: p.force }),
  }),
  reload: def({
    summary: 'apply edited definitions to running networks, live where the kernel allows',
    access: 'admin',
    params: (r) => ({ name: optStr(r, 'name') }),
    run: (svc, p, caller): Promise<ReloadResult[]> => svc.reload(p.name, caller),
  }),
  leases: def({
    summary: 'one page of a network\'s DHCP leases: those after the cursor `after`, at most `limit`',
    access: 'anyone',
    // maxBytes is no socket parameter (a page there is one frame); the D-Bus adapter sets its own
    params: (r) => ({ name: str(r, 'name'), after: r.after, limit: r.limit, maxBytes: undefined as number | undefined }),
    run: (svc, p, caller): Promise<LeasePage> => svc.leases(p.name, { after: p.after, limit: p.limit, ...(p.maxBytes ? { maxBytes: p.maxBytes } : {}) }, caller),
  }),
  create: def({
    summary: 'create a network of the caller\'s own, within [user-networks] of vnet.toml',
    access: 'anyone',
    params: (r) => ({
      name: str(r, 'name'),
      subnet: optStr(r, 'subnet'),
      forward: optStr(r, 'forward'),
      dhcp: optBool(r, 'dhcp'),
      ipv6: optStr(r, 'ipv6'),
      allowUsers: optNames(r, 'allowUsers'),
    }),
    run: (svc, p, caller): Promise<NetworkStatus> => svc.create(strip(p), caller),
  }),
  delete: def({
    summary: 'delete a network a user created (its owner or root): bridge, rules, dnsmasq, leases, subnet',
    access: 'anyone',
    params: (r) => ({ name: str(r, 'name'), force: optBool(r, 'force') ?? false }),
    run: async (svc, p, caller) => {
      await svc.delete(p.name, caller, { force: p.force });
      return { deleted: p.name };
    },
  }),
  tap: def({
    summary: 'a tap on a bridge for the caller (its fd comes with the reply)',
    access: 'anyone',
    passesFd: true,
    params: (r) => ({ bridge: str(r, 'bridge'), vnetHdr: optBool(r, 'vnetHdr') ?? false }),
    run: async (svc, p, caller): Promise<TapReply> => {
      const t = await svc.tap(p.bridge, { vnetHdr: p.vnetHdr }, caller);
      return { tap: t.name, fd: t.fd };
    },
  }),
  addPortForward: def({
    summary: 'forward a host port (tcp or udp) to a guest of a network; kept across restarts',
    access: 'admin',
    params: (r) => ({ name: str(r, 'name'), proto: proto(r, 'proto'), hostPort: port(r, 'hostPort'), guest: str(r, 'guest'), guestPort: optPort(r, 'guestPort') }),
    run: (svc, p, caller): Promise<PortForwardInfo> =>
      svc.addPortForward(p.name, { proto: p.proto, hostPort: p.hostPort, guest: p.guest, ...(p.guestPort !== undefined ? { guestPort: p.guestPort } : {}) }, caller),
  }),
  removePortForward: def({
    summary: 'remove a port forward added at run time',
    access: 'admin',
    params: (r) => ({ name: str(r, 'name'), proto: proto(r, 'proto'), hostPort: port(r, 'hostPort') }),
    run: async (svc, p, caller) => {
      await svc.removePortForward(p.name, p.proto, p.hostPort, caller);
      return { removed: true as const };
    },
  }),
  listPortForwards: def({
    summary: 'the port forwards of one network, or of every network',
    access: 'anyone',
    params: (r) => ({ name: optStr(r, 'name') }),
    run: (svc, p): Promise<PortForwardInfo[]> => svc.listPortForwards(p.name),
  }),
} as const;

export type MethodName = keyof typeof METHODS;
export type ParamsOf<M extends MethodName> = ReturnType<(typeof METHODS)[M]['params']>;
type RunResult<M extends MethodName> = Awaited<ReturnType<(typeof METHODS)[M]['run']>>;
/** What a client receives: the result, without an fd passed beside it. */
export type ResultOf<M extends MethodName> = RunResult<M> extends TapReply ? Omit<TapReply, 'fd'> : RunResult<M>;

export function methodOf(name: string): MethodDef<unknown, unknown> | undefined {
  return Object.hasOwn(METHODS, name) ? (METHODS[name as MethodName] as MethodDef<unknown, unknown>) : undefined;
}
