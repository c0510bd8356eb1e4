/**
 * vnet: the command line. A client of vnetd's socket; `vnet up` run as root starts
 * vnetd in the background when none answers, so the quick start needs no systemd.
 */
import { spawn } from 'node:child_process';
import { closeSync, constants, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { call, ClientError, Session } from '../api/client.js';
import { checkDefinitions } from '../config/check.js';
import { pathsFromEnv, type Paths } from '../config/paths.js';
import type { NetworkStatus } from '../daemon/service.js';
import type { Lease } from '../model.js';

const USAGE = `usage: vnet COMMAND [ARGS]

commands:
  status [NAME] [--json]   networks: name, bridge, state, subnet, leases, taps
  up NAME                  bring a network up and keep it up (root or group "vnet")
  down NAME [--force]      take a network down; --force even with VMs attached
  leases NAME [--json]     DHCP leases of a network: MAC, IP, hostname, expiry
  check                    validate every network definition, change nothing
  help                     this text

environment: VNET_CONFIG_DIR (/etc/vnet), VNET_STATE_DIR (/var/lib/vnet),
             VNET_RUNTIME_DIR (/run/vnet), VNET_QEMU_CONF_DIR (/etc/qemu)
`;

class UsageError extends Error {
  override name = 'UsageError';
}

function table(rows: string[][]): string {
  // a loop, not Math.max(...): a table may have 65,536 rows
  const widths = rows[0]!.map((_, i) => rows.reduce((w, r) => Math.max(w, (r[i] ?? '').length), 0));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

function formatStatus(list: NetworkStatus[]): string {
  const rows = [['NAME', 'BRIDGE', 'STATE', 'SUBNET', 'LEASES', 'TAPS']];
  for (const n of list) {
    const taps = n.taps.length ? n.taps.map((t) => `${t.name}(uid ${t.uid}, pid ${t.pid})`).join(' ') : '-';
    const state = n.state + (n.state === 'up' && n.pinned ? '' : n.state === 'up' ? ' (on-demand)' : '');
    rows.push([n.name, n.bridge, state, n.subnet, n.leasesProblem ? '?' : String(n.leases), taps]);
  }
  let out = table(rows);
  for (const n of list) if (n.reason) out += `\n${n.name}: ${n.reason}`;
  for (const n of list) if (n.leasesProblem) out += `\n${n.name}: leases unknown: ${n.leasesProblem}`;
  for (const n of list) if (n.conflict) out += `\n${n.name}: subnet conflict: ${n.conflict.subnet} is also in use by interface ${n.conflict.interface} (${n.conflict.detail}); guests may not reach it`;
  return out;
}

function formatLeases(leases: Lease[]): string {
  if (!leases.length) return 'no leases';
  const rows = [['MAC', 'IP', 'HOSTNAME', 'EXPIRES']];
  for (const l of leases) {
    rows.push([l.mac, l.ip, l.hostname || '-', l.expires === 0 ? 'never' : new Date(l.expires * 1000).toISOString()]);
  }
  return table(rows);
}

/**
 * Every lease of a network: vnetd answers in pages (a reply is one 64 KiB frame), sorted by
 * address; follow them on one connection.
 */
async function allLeases(paths: Paths, name: string): Promise<Lease[]> {
  const session = await Session.open(paths.socket);
  try {
    const leases: Lease[] = [];
    let after: string | null = null;
    for (;;) {
      const page = (await session.call('leases', { name, after })) as { leases?: unknown; next?: unknown } | null;
      if (!Array.isArray(page?.leases) || (page.next !== null && page.next !== undefined && typeof page.next !== 'string'))
        throw new ClientError('EPROTO', 'vnetd sent a malformed page of leases');
      for (const l of page.leases as Lease[]) leases.push(l);
      if (page.next === null || page.next === undefined) return leases;
      // a cursor that does not move would page forever
      if (page.next === after || page.leases.length === 0) throw new ClientError('EPROTO', `vnetd sent a page that does not advance (cursor ${page.next})`);
      after = page.next;
    }
  } finally {
    session.close();
  }
}

async function ensureDaemon(paths: Paths): Promise<void> {
  try {
    await call(paths.socket, 'ping', {}, 5000);
    return;
  } catch (err) {
    if (!(err instanceof ClientError) || err.code !== 'ENOTRUNNING') throw err;
    if (process.getuid?.() !== 0) throw new ClientError('ENOTRUNNING', `${err.message}; start it as root (\`sudo vnet up NAME\` or \`systemctl start vnetd.socket\`)`);
  }
  mkdirSync(paths.runtimeDir, { recursive: true, mode: 0o755 });
  // vnetd writes its log itself, capped (8 MiB and one rotated vnetd.log.1): a guest that
  // makes it log a lot must not fill /run. Its stdout and stderr (a crash message, if any)
  // go to the same file; a second vnetd racing this one says there why it stopped.
  const logFile = process.env.VNET_LOG_FILE || path.join(paths.runtimeDir, 'vnetd.log');
  const out = openSync(logFile, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o640);
  const vnetd = fileURLToPath(new URL('../../bin/vnetd', import.meta.url));
  const child = spawn(process.execPath, [vnetd], { detached: true, stdio: ['ignore', out, out], env: { ...process.env, VNET_LOG_FILE: logFile } });
  closeSync(out);
  child.unref();
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      await call(paths.socket, 'ping', {}, 2000);
      process.stderr.write(`vnet: started vnetd (pid ${child.pid}, log ${logFile})\n`);
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new ClientError('ETIMEDOUT', `vnetd did not start within 15 s; see ${logFile}`, { cause: err });
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

export async function run(argv: string[]): Promise<number> {
  const paths = pathsFromEnv();
  const json = argv.includes('--json');
  const force = argv.includes('--force');
  const args = argv.filter((a) => a !== '--json' && a !== '--force');
  const [cmd, ...rest] = args;
  const print = (s: string) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
  const needName = () => {
    const name = rest[0];
    if (!name || rest.length > 1) throw new UsageError(`\`vnet ${cmd}\` takes one network name`);
    if (name.startsWith('-')) throw new UsageError(`unknown option ${name}`);
    return name;
  };
  for (const a of rest) if (a.startsWith('-')) throw new UsageError(`unknown option ${a}`);

  switch (cmd) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      print(USAGE);
      return cmd === undefined ? 2 : 0;
    case 'status': {
      if (rest.length > 1) throw new UsageError('`vnet status` takes at most one network name');
      const list = (rest[0] ? [await call(paths.socket, 'status', { name: rest[0] })] : await call(paths.socket, 'list')) as NetworkStatus[];
      print(json ? JSON.stringify(list, null, 2) : formatStatus(list));
      return 0;
    }
    case 'up': {
      const name = needName();
      await ensureDaemon(paths);
      const s = (await call(paths.socket, 'up', { name })) as NetworkStatus;
      print(json ? JSON.stringify(s, null, 2) : `${s.name}: ${s.state} (bridge ${s.bridge}, ${s.address}/${s.subnet.split('/')[1]})`);
      return 0;
    }
    case 'down': {
      const name = needName();
      const s = (await call(paths.socket, 'down', { name, force })) as NetworkStatus;
      print(json ? JSON.stringify(s, null, 2) : `${s.name}: ${s.state}`);
      return 0;
    }
    case 'leases': {
      const name = needName();
      const leases = await allLeases(paths, name);
      const out = json ? JSON.stringify(leases, null, 2) : formatLeases(leases);
      // tens of MB into a pipe: wait until it is written, or exiting would cut it short
      await new Promise<void>((resolve) => process.stdout.write(`${out}\n`, () => resolve()));
      return 0;
    }
    case 'check': {
      if (rest.length) throw new UsageError('`vnet check` takes no arguments');
      const { ok, errors } = await checkDefinitions(paths);
      for (const line of ok) print(`ok     ${line}`);
      for (const line of errors) process.stderr.write(`error  ${line}\n`);
      return errors.length ? 1 : 0;
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(cmd)}`);
  }
}

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`vnet: ${err.message}\n\n${USAGE}`);
      process.exit(2);
    }
    process.stderr.write(`vnet: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
