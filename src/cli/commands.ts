/**
 * The CLI's commands, as a table: each one's usage, its own options (util.parseArgs: an option
 * another command has is still unknown here), how many names it takes, and what it does through
 * the client. A new command is a new entry.
 */
import { EXIT, VnetError } from '../api/errors.js';
import type { MethodName, ParamsOf, ResultOf } from '../api/methods.js';
import type { Paths } from '../config/paths.js';
import type { NetworkStatus } from '../daemon/service.js';
import type { LeasePage } from '../dhcp/lease-page.js';
import type { Lease } from '../model.js';
import type { NetworkSpec } from '../spec/spec.js';
import { formatForwards, formatLeases, formatStatus, formatUp } from './format.js';

// Modules a command alone needs (definitions, the importer) are imported when it runs: `vnet
// status` loads no TOML parser, XML parser or definition code.

/** What a command may use: where vnet lives, output, and the API (a fake in unit tests). */
export interface Ctx {
  paths: Paths;
  out(text: string): Promise<void>;
  err(text: string): void;
  call<M extends MethodName>(method: M, params?: Partial<ParamsOf<M>>): Promise<ResultOf<M>>;
  /** several calls on one connection (pages of leases) */
  pages<T>(fn: (call: Ctx['call']) => Promise<T>): Promise<T>;
  /** start vnetd when none answers (as root) */
  ensureDaemon(): Promise<void>;
}

export type OptionSpec = Record<string, { type: 'boolean' | 'string'; short?: string }>;

export interface Command {
  name: string;
  /** "NAME [--force]" */
  args: string;
  summary: string;
  options: OptionSpec;
  /** how many positional arguments: [least, most] */
  names: [number, number];
  /** the command parses its own arguments (they come as `names`, untouched) */
  ownArgs?: true;
  run(ctx: Ctx, names: string[], opts: Record<string, string | boolean | undefined>): Promise<number>;
}

const JSON_OPT: OptionSpec = { json: { type: 'boolean' } };
const show = (v: unknown) => `${JSON.stringify(v, null, 2)}`;

/** Every lease of a network: vnetd answers in pages (a reply is one 64 KiB frame), sorted by address. */
async function allLeases(ctx: Ctx, name: string): Promise<Lease[]> {
  return ctx.pages(async (call) => {
    const leases: Lease[] = [];
    let after: string | null = null;
    for (;;) {
      const page: LeasePage = await call('leases', { name, after });
      if (!Array.isArray(page?.leases) || (page.next !== null && typeof page.next !== 'string')) throw new VnetError('EPROTO', 'vnetd sent a malformed page of leases');
      for (const l of page.leases) leases.push(l);
      if (page.next === null) return leases;
      // a cursor that does not move would page forever
      if (page.next === after || page.leases.length === 0) throw new VnetError('EPROTO', `vnetd sent a page that does not advance (cursor ${page.next})`);
      after = page.next;
    }
  });
}

/** The networks as their definitions say, all down: what status can tell without vnetd. */
async function offline(paths: Paths, name?: string): Promise<NetworkStatus[]> {
  const { readDefinitionSet } = await import('../config/networks.js');
  const { networks } = readDefinitionSet(paths.networksDir);
  const shown = (s: NetworkSpec): NetworkStatus => {
    const v4 = s.addresses.find((a) => a.family === 4);
    return { name: s.name, bridge: s.bridge.name, state: 'down', subnet: v4?.cidr ?? '', address: v4?.address ?? '', addresses: s.addresses.map((a) => `${a.address}/${a.prefix}`), forward: s.forward.mode, onDemand: s.lifecycle.onDemand, pinned: false, leases: 0, taps: [], source: s.source };
  };
  const all = [...networks.values()];
  if (name === undefined) return all.map(shown);
  const one = networks.get(name) ?? all.find((s) => s.bridge.name === name);
  if (!one) throw new VnetError('ENOENT', `no network or bridge named "${name}" (definitions live in ${paths.networksDir})`);
  return [shown(one)];
}

const FORWARD_USAGE = {
  add: 'vnet forward add NET tcp|udp HOSTPORT GUEST[:PORT]',
  list: 'vnet forward list [NET]',
  remove: 'vnet forward remove NET tcp|udp HOSTPORT',
} as const;

/** `vnet forward add|list|remove ...`: a usage problem is exit 2 naming it, before vnetd is asked anything. */
async function forward(ctx: Ctx, [verb, ...rest]: string[], json: boolean): Promise<number> {
  const usage = (why: string) => {
    ctx.err(`vnet: ${why}; usage: ${verb !== undefined && Object.hasOwn(FORWARD_USAGE, verb) ? FORWARD_USAGE[verb as keyof typeof FORWARD_USAGE] : Object.values(FORWARD_USAGE).join(' | ')}`);
    return EXIT.usage;
  };
  if (verb === 'list') {
    if (rest.length > 1) return usage('`vnet forward list` takes at most one network name');
    const list = await ctx.call('listPortForwards', rest.length ? { name: rest[0]! } : {});
    await ctx.out(json ? show(list) : formatForwards(list));
    return 0;
  }
  if (verb !== 'add' && verb !== 'remove') return usage(`\`vnet forward\` takes add, list or remove, not ${JSON.stringify(verb)}`);
  // loaded here: the address module is no cost of every other command
  const { isProto, portOf, splitGuest } = await import('../spec/port-forwards.js');
  const want = verb === 'add' ? 4 : 3;
  if (rest.length !== want) return usage(`\`vnet forward ${verb}\` takes ${want} arguments`);
  const [name, proto, hostText, guestText] = rest as [string, string, string, string];
  if (!isProto(proto)) return usage(`protocol ${JSON.stringify(proto)} is neither tcp nor udp`);
  const hostPort = portOf(hostText);
  if (hostPort === undefined) return usage(`host port ${JSON.stringify(hostText)} is not a port 1..65535`);
  if (verb === 'remove') {
    await ctx.call('removePortForward', { name, proto, hostPort });
    if (!json) await ctx.out(`${name}: ${proto} ${hostPort} no longer forwarded`);
    else await ctx.out(show({ removed: true }));
    return 0;
  }
  const g = splitGuest(guestText);
  if (typeof g === 'string') return usage(g);
  if (g.guest === '') return usage(`guest ${JSON.stringify(guestText)} names no guest`);
  const f = await ctx.call('addPortForward', { name, proto, hostPort, guest: g.guest, ...(g.port !== undefined ? { guestPort: g.port } : {}) });
  await ctx.out(json ? show(f) : `${f.network}: ${f.proto} ${f.hostPort} → ${f.guest}${f.address !== f.guest ? ` (${f.address})` : ''}:${f.guestPort} (${f.active ? 'active' : 'applies when the network is up'})`);
  return 0;
}

export const COMMANDS: Command[] = [
  {
    name: 'status',
    args: '[NAME] [--json]',
    summary: 'networks: name, bridge, state, subnet, leases, taps (NAME: a network or its bridge)',
    options: JSON_OPT,
    names: [0, 1],
    async run(ctx, [name], o) {
      let list: NetworkStatus[];
      try {
        list = name === undefined ? await ctx.call('list') : [await ctx.call('status', { name })];
      } catch (err) {
        if (!(err instanceof VnetError) || err.code !== 'ENOTRUNNING') throw err;
        // no vnetd: what the definitions say, every network down, and exit 6
        list = await offline(ctx.paths, name);
        await ctx.out(o.json ? show(list) : formatStatus(list));
        ctx.err(`vnet: ${err.message}; every network is down`);
        return 6;
      }
      await ctx.out(o.json ? show(list) : formatStatus(list));
      return 0;
    },
  },
  {
    name: 'up',
    args: 'NAME [--json]',
    summary: 'bring a network up and keep it up (root or group "vnet"); starts vnetd if needed',
    options: JSON_OPT,
    names: [1, 1],
    async run(ctx, [name], o) {
      await ctx.ensureDaemon();
      const s = await ctx.call('up', { name: name! });
      await ctx.out(o.json ? show(s) : formatUp(s));
      return 0;
    },
  },
  {
    name: 'down',
    args: 'NAME [--force] [--json]',
    summary: 'take a network down; --force even with VMs attached (root or group "vnet")',
    options: { ...JSON_OPT, force: { type: 'boolean' } },
    names: [1, 1],
    async run(ctx, [name], o) {
      const s = await ctx.call('down', { name: name!, force: o.force === true });
      await ctx.out(o.json ? show(s) : `${s.name}: ${s.state}`);
      return 0;
    },
  },
  {
    name: 'reload',
    args: '[NAME] [--json]',
    summary: 'apply edited definitions to running networks without taking them down (root or group "vnet")',
    options: JSON_OPT,
    names: [0, 1],
    async run(ctx, [name], o) {
      const r = await ctx.call('reload', name === undefined ? {} : { name });
      if (o.json) await ctx.out(show(r));
      else await ctx.out(r.length ? r.map((x) => `${x.name}: ${x.changed.length ? `applied ${x.changed.join(', ')}` : 'unchanged'}`).join('\n') : 'no network runs');
      return 0;
    },
  },
  {
    name: 'leases',
    args: 'NAME [--json]',
    summary: 'DHCP leases of a network: MAC, IP, hostname, expiry (anyone)',
    options: JSON_OPT,
    names: [1, 1],
    async run(ctx, [name], o) {
      const leases = await allLeases(ctx, name!);
      await ctx.out(o.json ? show(leases) : formatLeases(leases));
      return 0;
    },
  },
  {
    name: 'forward',
    args: 'add NET tcp|udp HOSTPORT GUEST[:PORT] | list [NET] | remove NET tcp|udp HOSTPORT  [--json]',
    summary: 'port forwards: the host\'s HOSTPORT to a guest (an address in NET or a [[hosts]] name); add/remove: root or group "vnet"',
    options: JSON_OPT,
    names: [1, 5],
    run: (ctx, args, o) => forward(ctx, args, o.json === true),
  },
  {
    name: 'create',
    args: 'NAME [--subnet auto|CIDR] [--forward nat|isolated] [--dhcp] [--ipv6 auto] [--allow-users U,...] [--json]',
    summary: 'create a network of your own, within the limits of [user-networks] in vnet.toml; its bridge is in the output',
    options: { ...JSON_OPT, subnet: { type: 'string' }, forward: { type: 'string' }, dhcp: { type: 'boolean' }, ipv6: { type: 'string' }, 'allow-users': { type: 'string' } },
    names: [1, 1],
    async run(ctx, [name], o) {
      const users = typeof o['allow-users'] === 'string' ? o['allow-users'].split(',').map((u) => u.trim()).filter(Boolean) : undefined;
      const s = await ctx.call('create', {
        name: name!,
        ...(typeof o.subnet === 'string' ? { subnet: o.subnet } : {}),
        ...(typeof o.forward === 'string' ? { forward: o.forward } : {}),
        ...(o.dhcp === true ? { dhcp: true } : {}),
        ...(typeof o.ipv6 === 'string' ? { ipv6: o.ipv6 } : {}),
        ...(users ? { allowUsers: users } : {}),
      });
      await ctx.out(o.json ? show(s) : `${s.name}: created (bridge ${s.bridge}, ${s.addresses.join(', ')}, ${s.forward}); comes up when a VM asks for a tap on ${s.bridge}`);
      return 0;
    },
  },
  {
    name: 'delete',
    args: 'NAME [--force]',
    summary: 'delete a network you created (or, as root, OWNER:NAME): its bridge, rules, dnsmasq, leases and subnet; --force even with VMs attached',
    options: { force: { type: 'boolean' } },
    names: [1, 1],
    async run(ctx, [name], o) {
      await ctx.call('delete', { name: name!, force: o.force === true });
      await ctx.out(`${name}: deleted`);
      return 0;
    },
  },
  {
    name: 'list',
    args: '[--mine] [--json]',
    summary: 'the networks you may see (the admin\'s, yours, those shared with you); --mine: only those you created',
    options: { ...JSON_OPT, mine: { type: 'boolean' } },
    names: [0, 0],
    async run(ctx, _names, o) {
      const me = process.getuid?.() ?? -1;
      const list = (await ctx.call('list')).filter((n) => o.mine !== true || n.owner?.uid === me);
      await ctx.out(o.json ? show(list) : list.length ? formatStatus(list) : 'no networks');
      return 0;
    },
  },
  {
    name: 'import-libvirt',
    args: 'FILE.xml|DIR|--running [--write [--force]]',
    summary: 'libvirt network XML → vnet definitions (printed; --write writes them)',
    options: {},
    names: [0, Infinity],
    ownArgs: true,
    run: async (ctx, args) => {
      const { importLibvirt } = await import('../import/command.js');
      return importLibvirt(args, { out: ctx.out, err: async (t) => ctx.err(t.replace(/\n$/, '')), env: process.env });
    },
  },
  {
    name: 'check',
    args: '',
    summary: 'validate every network definition, change nothing',
    options: {},
    names: [0, 0],
    async run(ctx) {
      const { checkDefinitions } = await import('../config/check.js');
      const { ok, errors } = await checkDefinitions(ctx.paths);
      if (ok.length) await ctx.out(ok.map((line) => `ok     ${line}`).join('\n'));
      for (const line of errors) ctx.err(`error  ${line}`);
      return errors.length ? 1 : 0;
    },
  },
  {
    name: 'doctor',
    args: '[NET] [--json]',
    summary: 'check this host for what stops vnet (forwarding, other firewalls, port 53, AppArmor/SELinux, ...), each with its fix; exit 0 nothing wrong, 1 something wrong',
    options: JSON_OPT,
    names: [0, 1],
    async run(ctx, [name], o) {
      const [{ doctor }, { formatFindings }] = await Promise.all([import('../doctor/doctor.js'), import('../doctor/format.js')]);
      const findings = await doctor({ paths: ctx.paths, call: ctx.call, ...(name !== undefined ? { net: name } : {}) });
      await ctx.out(o.json ? show(findings) : formatFindings(findings));
      return findings.some((f) => !f.ok) ? EXIT.failed : EXIT.ok;
    },
  },
];
