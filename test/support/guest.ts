/**
 * The test guest: a Debian kernel and a busybox initramfs (test/fixtures/build-guest.sh)
 * booted under QEMU (TCG: `-accel kvm` hangs on these machines). The guest takes a DHCP
 * lease on its virtio-net NIC, pings the addresses given by `vnet.ping=` on the kernel
 * command line (default 198.51.100.1), prints `VNET-GUEST: ...` markers on the serial
 * console and powers off. runGuest returns the console and the parsed markers.
 */
import { execa } from 'execa';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { Netns } from './netns.js';
import { trackPid, untrackPid } from './netns.js';

export const BUILD_SCRIPT = fileURLToPath(new URL('../fixtures/build-guest.sh', import.meta.url));

export function guestCacheDir(): string {
  return process.env.VNET_GUEST_CACHE || '/var/cache/vnet-test-guest';
}

export interface GuestImage {
  kernel: string;
  initrd: string;
}

export class GuestBuildError extends Error {
  override name = 'GuestBuildError';
}

let building: Promise<GuestImage> | undefined;

/** Build (or find cached) the guest kernel and initramfs; runs build-guest.sh once per process. */
export function ensureGuest(): Promise<GuestImage> {
  building ??= buildGuest().catch((err: unknown) => {
    building = undefined;
    throw err;
  });
  return building;
}

async function buildGuest(): Promise<GuestImage> {
  const dir = guestCacheDir();
  const r = await execa('sh', [BUILD_SCRIPT, dir], { reject: false, all: true, stdin: 'ignore' });
  if (r.exitCode !== 0) {
    throw new GuestBuildError(
      `${BUILD_SCRIPT} ${dir} exited with ${r.exitCode ?? r.signal ?? 'unknown status'}:\n${String(r.all ?? '')}`,
      { cause: r },
    );
  }
  return { kernel: path.join(dir, 'vmlinuz'), initrd: path.join(dir, 'initrd.img') };
}

export interface BindMount {
  source: string;
  target: string;
}

export interface RunGuestOptions {
  /** Run QEMU inside this namespace (ip netns exec). */
  ns?: Netns;
  /** Run QEMU as this user (setpriv, with the user's primary group and supplementary groups). */
  user?: string;
  /** Run QEMU as this uid and gid with these supplementary groups (setpriv): for a user only vnetd's NSS knows. */
  ids?: { uid: number; gid: number; groups?: number[] };
  /** QEMU network arguments, e.g. ['-netdev', 'bridge,id=n0,br=br0,helper=/p', '-device', 'virtio-net-pci,netdev=n0']. */
  netdev: string[];
  /** SIGKILL QEMU after this long; the result then has timedOut: true. */
  timeoutMs: number;
  /** Extra environment for QEMU (and so for its bridge helper); added to this process's environment. */
  env?: Record<string, string>;
  /** Appended to the kernel command line, e.g. 'vnet.ping=198.51.100.1,10.99.0.1 vnet.hold=5'. */
  append?: string;
  /**
   * Bind mounts made (as root) in a private mount namespace before QEMU starts, e.g. a test
   * bridge.conf folder over /etc/qemu. The real mounts are never touched.
   */
  binds?: BindMount[];
}

export interface GuestMarkers {
  /** Address from the DHCP lease ("VNET-GUEST: lease IP"). */
  lease?: string;
  prefix?: number;
  router?: string;
  dns?: string[];
  /** Every ping target answered (false when none was pinged). */
  ping: boolean;
  /** Result per ping target. */
  pings: Record<string, boolean>;
  /** The guest reached its own poweroff (it did not crash or get killed first). */
  poweroff: boolean;
}

export interface GuestResult {
  exitCode: number | undefined;
  /** Serial console, with QEMU's own stderr interleaved. */
  console: string;
  markers: GuestMarkers;
  timedOut: boolean;
  durationMs: number;
}

const MARKER = /VNET-GUEST: (.*?)\r?$/gm;

/** Parse the `VNET-GUEST: ...` lines of a console log. */
export function parseMarkers(consoleText: string): GuestMarkers {
  const m: GuestMarkers = { ping: false, pings: {}, poweroff: false };
  for (const match of consoleText.matchAll(MARKER)) {
    const [word = '', ...rest] = (match[1] ?? '').trim().split(/\s+/);
    const arg = rest[0];
    if (word === 'lease' && arg) m.lease = arg;
    else if (word === 'prefix' && arg) m.prefix = Number(arg);
    else if (word === 'router' && arg) m.router = arg;
    else if (word === 'dns' && arg) m.dns = rest;
    else if (word === 'ping' && (arg === 'ok' || arg === 'failed') && rest[1]) m.pings[rest[1]] = arg === 'ok';
    else if (word === 'poweroff') m.poweroff = true;
  }
  const results = Object.values(m.pings);
  m.ping = results.length > 0 && results.every(Boolean);
  return m;
}

async function primaryGroup(user: string): Promise<string> {
  const r = await execa('id', ['-g', user], { reject: false });
  if (r.exitCode !== 0) throw new Error(`runGuest: unknown user ${JSON.stringify(user)}: ${String(r.stderr)}`);
  return String(r.stdout).trim();
}

/** The full command line: [ip netns exec NS] [unshare -m sh -c 'mount --bind ...'] [setpriv ...] qemu ... */
async function commandLine(opts: RunGuestOptions, image: GuestImage): Promise<string[]> {
  const append = ['console=ttyS0', 'panic=-1', 'loglevel=4', opts.append ?? ''].join(' ').trim();
  let cmd = [
    'qemu-system-x86_64',
    '-accel', 'tcg',
    '-m', '256',
    '-nodefaults',
    '-display', 'none',
    '-serial', 'stdio',
    '-no-reboot',
    '-kernel', image.kernel,
    '-initrd', image.initrd,
    '-append', append,
    ...opts.netdev,
  ];
  if (opts.user !== undefined) {
    const gid = await primaryGroup(opts.user);
    cmd = ['setpriv', `--reuid=${opts.user}`, `--regid=${gid}`, '--init-groups', ...cmd];
  } else if (opts.ids !== undefined) {
    const groups = opts.ids.groups?.length ? `--groups=${opts.ids.groups.join(',')}` : '--clear-groups';
    cmd = ['setpriv', `--reuid=${opts.ids.uid}`, `--regid=${opts.ids.gid}`, groups, ...cmd];
  }
  if (opts.binds && opts.binds.length > 0) {
    const script = 'set -e; while [ "$1" != -- ]; do mount --bind "$1" "$2"; shift 2; done; shift; exec "$@"';
    const pairs = opts.binds.flatMap((b) => [b.source, b.target]);
    cmd = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', ...pairs, '--', ...cmd];
  }
  if (opts.ns) cmd = ['ip', 'netns', 'exec', opts.ns.name, ...cmd];
  return cmd;
}

/**
 * Boot the guest and wait for it to power off (or kill it at timeoutMs). Every wrapper
 * execs the next, so the pid tracked (and killed on timeout) is QEMU's own.
 */
export async function runGuest(opts: RunGuestOptions): Promise<GuestResult> {
  if (!Number.isFinite(opts.timeoutMs) || opts.timeoutMs <= 0) {
    throw new RangeError(`runGuest: expected timeoutMs to be a positive number, got ${String(opts.timeoutMs)}`);
  }
  const image = await ensureGuest();
  const [file = '', ...args] = await commandLine(opts, image);
  const started = Date.now();
  const sub = execa(file, args, {
    reject: false,
    all: true,
    stdin: 'ignore',
    env: opts.env ?? {},
    extendEnv: true,
    stripFinalNewline: false,
  });
  trackPid(sub.pid);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    if (sub.pid) {
      try {
        process.kill(sub.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }, opts.timeoutMs);
  try {
    const r = await sub;
    const consoleText = String(r.all ?? '');
    return {
      exitCode: r.exitCode,
      console: consoleText,
      markers: parseMarkers(consoleText),
      timedOut,
      durationMs: Date.now() - started,
    };
  } finally {
    clearTimeout(timer);
    untrackPid(sub.pid);
  }
}
