/**
 * dnsmasq's lease file: one IPv4 lease a line, `EXPIRY MAC IP HOSTNAME CLIENTID`, where
 * `*` stands for an unknown hostname or client id (mapped to ""). A `duid ...` line starts
 * the IPv6 part, which vnet does not use and skips. Malformed lines are skipped and counted.
 */
import { constants, watch, type FSWatcher } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import type { Lease } from '../model.js';

export interface ParsedLeases {
  leases: Lease[];
  /** lines that were neither a lease, a blank line nor part of the IPv6 section */
  malformed: number;
}

export class LeaseFileError extends Error {
  override name = 'LeaseFileError';
  constructor(
    readonly file: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`lease file ${file}: ${message}`, options);
  }
}

const MAC = /^([0-9]+-)?[0-9a-f]{2}(:[0-9a-f]{2}){0,19}$/i;
const TOKEN = /^[\x21-\x7e]+$/;
/** A lease file larger than this is not a dnsmasq lease file we wrote. */
const MAX_BYTES = 16 * 1024 * 1024;

function isIpv4(s: string): boolean {
  const parts = s.split('.');
  return parts.length === 4 && parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255);
}

/** One line, or undefined when it is not an IPv4 lease. */
export function parseLeaseLine(line: string): Lease | undefined {
  const f = line.trim().split(/[ \t]+/);
  if (f.length !== 5) return undefined;
  const [expiry, mac, ip, hostname, clientId] = f as [string, string, string, string, string];
  if (!/^[0-9]{1,12}$/.test(expiry) || !MAC.test(mac) || !isIpv4(ip)) return undefined;
  if (!TOKEN.test(hostname) || !TOKEN.test(clientId)) return undefined;
  return {
    expires: Number(expiry),
    mac: mac.toLowerCase(),
    ip,
    hostname: hostname === '*' ? '' : hostname,
    clientId: clientId === '*' ? '' : clientId,
  };
}

export function parseLeases(text: string): ParsedLeases {
  const leases: Lease[] = [];
  let malformed = 0;
  let ipv6 = false;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (/^duid[ \t]/.test(line)) {
      ipv6 = true;
      continue;
    }
    if (ipv6) continue;
    const lease = parseLeaseLine(line);
    if (lease) leases.push(lease);
    else malformed += 1;
  }
  return { leases, malformed };
}

/** Read and parse a lease file; a missing file has no leases. Never follows a symlink. */
export async function readLeaseFile(file: string): Promise<ParsedLeases> {
  let fh;
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { leases: [], malformed: 0 };
    if (code === 'ELOOP') throw new LeaseFileError(file, 'is a symlink; not reading it', { cause: err });
    throw new LeaseFileError(file, `cannot open: ${(err as Error).message}`, { cause: err });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new LeaseFileError(file, 'is not a regular file');
    if (st.size > MAX_BYTES) throw new LeaseFileError(file, `is ${st.size} bytes, over the ${MAX_BYTES}-byte limit`);
    return parseLeases(await fh.readFile('utf8'));
  } finally {
    await fh.close();
  }
}

export async function readLeases(file: string): Promise<Lease[]> {
  return (await readLeaseFile(file)).leases;
}

export type LeaseEvent = { type: 'added' | 'removed'; lease: Lease };

export interface LeaseWatcher {
  /** resolves once the current leases are known (they produce no events) */
  ready: Promise<void>;
  close(): void;
}

const key = (l: Lease) => `${l.mac} ${l.ip}`;

/**
 * Watch a lease file (through its folder, as dnsmasq may create or replace it) and report
 * leases that appear or disappear, keyed by MAC and address. Read errors go to `onError`.
 */
export function watchLeases(
  file: string,
  cb: (e: LeaseEvent) => void,
  opts: { debounceMs?: number; onError?: (err: Error) => void } = {},
): LeaseWatcher {
  const debounceMs = opts.debounceMs ?? 50;
  const base = path.basename(file);
  let known = new Map<string, Lease>();
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();

  const refresh = async (emit: boolean): Promise<void> => {
    let leases: Lease[];
    try {
      leases = await readLeases(file);
    } catch (err) {
      opts.onError?.(err as Error);
      return;
    }
    if (closed) return;
    const next = new Map(leases.map((l) => [key(l), l]));
    if (emit) {
      for (const [k, l] of known) if (!next.has(k)) cb({ type: 'removed', lease: l });
      for (const [k, l] of next) if (!known.has(k)) cb({ type: 'added', lease: l });
    }
    known = next;
  };

  let watcher: FSWatcher;
  try {
    watcher = watch(path.dirname(file), (_event, name) => {
      if (closed || (name !== null && name !== base)) return;
      clearTimeout(timer);
      timer = setTimeout(() => {
        running = running.then(() => refresh(true));
      }, debounceMs);
    });
  } catch (err) {
    throw new LeaseFileError(file, `cannot watch its folder: ${(err as Error).message}`, { cause: err });
  }
  watcher.on('error', (err) => opts.onError?.(err));
  running = refresh(false);
  return {
    ready: running,
    close() {
      closed = true;
      clearTimeout(timer);
      watcher.close();
    },
  };
}
