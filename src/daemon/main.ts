/**
 * vnetd: runs in the foreground, logs JSON lines (pino) to stdout, or with
 * VNET_LOG_FILE=PATH (set by `vnet up` when it starts vnetd) to that file, capped at
 * VNET_LOG_MAX_BYTES (8 MiB) plus one rotated PATH.1. One vnetd per runtime folder: the
 * first thing it does is take RUNTIME/vnetd.lock (./instance-lock.ts); a second one exits 1
 * naming the first. Socket activation (LISTEN_FDS) or its own socket at
 * $VNET_RUNTIME_DIR/vnetd.sock; READY=1 to systemd once the socket serves and state is
 * reconciled; with VNET_IDLE_EXIT=SECONDS (set by the systemd unit) it exits after that long
 * with no network up and no client.
 */
import pino from 'pino';
import { pathsFromEnv } from '../config/paths.js';
import type { FileLock } from '../sys/flock.js';
import { listenFds, sdNotify } from '../sys/notify.js';
import type { DbusHandle } from '../dbus/bus.js';
import { errField } from '../log/cut.js';
import { refusalLimiter } from '../log/refusals.js';
import { Daemon } from './daemon.js';
import { takeInstanceLock } from './instance-lock.js';
import { CappedLogFile, DEFAULT_LOG_MAX_BYTES } from './log-file.js';
import { Server } from './server.js';

// `ps`, `top` and /proc/PID/comm show "vnetd", not "node" (libuv sets both argv[0] and the
// thread name through prctl(PR_SET_NAME)); 15 bytes at most, or comm is cut.
process.title = 'vnetd';

/** held for the life of the process: were it garbage-collected, its file would close and the lock go */
let instanceLock: FileLock | undefined;

function logDestination(): CappedLogFile | undefined {
  const file = process.env.VNET_LOG_FILE;
  if (!file) return undefined;
  const max = Number(process.env.VNET_LOG_MAX_BYTES || DEFAULT_LOG_MAX_BYTES);
  return new CappedLogFile(file, { maxBytes: Number.isSafeInteger(max) && max > 0 ? max : DEFAULT_LOG_MAX_BYTES });
}

async function main(): Promise<void> {
  const paths = pathsFromEnv();
  // before anything else is touched (socket, state, dnsmasq, log): a second vnetd stops here
  instanceLock = await takeInstanceLock(paths.runtimeDir);
  const dest = logDestination();
  const opts = { level: process.env.VNET_LOG_LEVEL || 'info', base: { pid: process.pid } };
  const log = dest ? pino(opts, dest) : pino(opts);
  const quota = Number(process.env.VNET_TAP_QUOTA || 64);
  const daemon = new Daemon({ paths, log, tapQuota: Number.isInteger(quota) && quota > 0 ? quota : 64 });
  const fds = listenFds();
  const t0 = performance.now();
  await daemon.start();
  let arm = () => {}; // the idle-exit timer, when VNET_IDLE_EXIT is set (below)
  const idleMs = Number(process.env.VNET_CLIENT_IDLE_MS || 30_000);
  // a uid's refusals are logged once per window, whichever front (socket, D-Bus) they come by
  const refusals = refusalLimiter();
  const server = new Server({
    service: daemon,
    log,
    refusals,
    listen: fds[0] !== undefined ? { fd: fds[0] } : { path: paths.socket },
    idleTimeoutMs: Number.isInteger(idleMs) && idleMs > 0 ? idleMs : 30_000,
    onQuiet: () => arm(),
    closer: daemon.tapCloser,
  });
  await server.start();
  // VNET_DBUS_ADDRESS: "system", or a bus address (unix:path=...). Without the bus the socket still serves.
  let dbusApi: DbusHandle | undefined;
  if (process.env.VNET_DBUS_ADDRESS) {
    // loaded only when asked for: dbus-next costs start-up time a socket-only vnetd need not pay
    const { startDbus } = await import('../dbus/bus.js');
    dbusApi = await startDbus(daemon, { address: process.env.VNET_DBUS_ADDRESS, log, refusals }).catch((err) => {
      log.error({ err }, 'D-Bus API not started; the socket API still serves');
      return undefined;
    });
  }
  log.info({ socket: fds.length ? `fd ${fds[0]}` : paths.socket, ms: +(performance.now() - t0).toFixed(1) }, 'vnetd ready');
  sdNotify('READY=1');

  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    // first, in the same tick as the decision to stop: no connection is accepted after it
    const closing = server.close();
    log.info({ why }, 'vnetd stopping');
    sdNotify('STOPPING=1');
    await dbusApi?.close().catch((err) => log.warn({ err }, 'D-Bus API did not close cleanly'));
    await closing;
    await daemon.close();
    // also the one read of instanceLock: a bundler drops a variable nobody reads, and the
    // handle it held would then be closed by the garbage collector, and the lock with it
    await instanceLock?.release();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  // SIGHUP: `vnet reload` of every running network, as root
  process.on('SIGHUP', () => {
    daemon.reload(undefined, { pid: process.pid, uid: 0, gid: 0, groups: [] }).then(
      (r) => log.info({ reloaded: r.filter((x) => x.changed.length).map((x) => x.name) }, 'SIGHUP: definitions reloaded'),
      (err) => log.error({ err: errField(err) }, 'SIGHUP: reload refused'),
    );
  });

  // Idle exit without polling: one timer, armed whenever the last client leaves or a
  // network changes state, fires only if still nothing is up and nobody is connected.
  const idle = Number(process.env.VNET_IDLE_EXIT || 0);
  if (idle > 0) {
    let timer: NodeJS.Timeout | undefined;
    const quiet = () => server.connections === 0 && !daemon.hasActiveNetworks();
    arm = () => {
      clearTimeout(timer);
      if (!quiet()) return;
      timer = setTimeout(() => {
        // checked again right before stop() closes the listener, in this same tick
        if (quiet()) void stop(`idle for ${idle} s with no network up`);
      }, idle * 1000);
      timer.unref();
    };
    daemon.subscribe((e) => e.type === 'network-state' && arm());
    arm();
  }
}

main().catch((err) => {
  process.stderr.write(`vnetd: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
