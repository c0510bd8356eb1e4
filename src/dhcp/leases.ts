/**
 * dnsmasq's lease file: one IPv4 lease a line, `EXPIRY MAC IP HOSTNAME CLIENTID`, where
 * `*` stands for an unknown hostname or client id (mapped to ""). A `duid SERVERDUID` line starts
 * the IPv6 part: `EXPIRY IAID IPV6 HOSTNAME CLIENTDUID`, the IAID where a MAC would be (see
 * parseLease6Line). Malformed lines are skipped and counted.
 *
 * A file is read and parsed in slices, yielding to the event loop between them: a lease file
 * may legitimately hold tens of megabytes (see MAX_FILE_BYTES), and vnetd must keep answering
 * meanwhile.
 */
import { constants, watch, type FSWatcher } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import type { Lease } from '../model.js';

export interface ParsedLeases {
  leases: Lease[];
  /** lines that were neither a lease (of either family), a blank line nor the `duid` line */
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

/** The most leases one network can hold: the largest `dhcp-lease-max` a definition accepts. */
export const MAX_LEASES = 65535;
/** DHCP options 12 and 81 (host name) and 61 (client id) carry at most 255 bytes. */
const MAX_HOSTNAME = 255;
const MAX_CLIENT_ID_BYTES = 255;
const MAX_EXPIRY_DIGITS = 12;
/** hardware address: an optional hex type ("6-", "20-"), then 1..20 octets */
const MAX_HWADDR_OCTETS = 20;
/**
 * The longest line parseLeaseLine accepts: expiry, hardware address (type prefix of up to 4 hex
 * digits and a dash, octets as hex pairs with colons), dotted quad, host name, client id (hex
 * pairs with colons, as dnsmasq writes it), four separators and the newline. 1115 bytes.
 */
export const MAX_LINE_BYTES =
  MAX_EXPIRY_DIGITS + (5 + MAX_HWADDR_OCTETS * 3 - 1) + 15 + MAX_HOSTNAME + (MAX_CLIENT_ID_BYTES * 3 - 1) + 4 + 1;
/**
 * The largest lease file a valid configuration can produce: MAX_LEASES lines of MAX_LINE_BYTES,
 * plus 4 KiB for a `duid` line and blank lines. 73,075,621 bytes (about 70 MiB). Anything larger
 * is not a lease file dnsmasq wrote for vnet, and is not read.
 */
export const MAX_FILE_BYTES = MAX_LEASES * MAX_LINE_BYTES + 4096;

const MAC = new RegExp(`^([0-9a-f]{1,4}-)?[0-9a-f]{2}(:[0-9a-f]{2}){0,${MAX_HWADDR_OCTETS - 1}}$`, 'i');
const TOKEN = /^[\x21-\x7e]+$/;
const EXPIRY = new RegExp(`^[0-9]{1,${MAX_EXPIRY_DIGITS}}$`);
const CLIENT_ID_MAX = MAX_CLIENT_ID_BYTES * 3 - 1;

const OCTET = '(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const IPV4 = new RegExp(`^${OCTET}(\\.${OCTET}){3}$`);

/** A dotted quad without leading zeros. */
export function isIpv4(s: string): boolean {
  return IPV4.test(s);
}

/** A hardware address as dnsmasq writes it in a lease line (lower or upper case). */
export function isHwAddr(s: string): boolean {
  return MAC.test(s);
}

/** One line, or undefined when it is not an IPv4 lease. */
export function parseLeaseLine(line: string): Lease | undefined {
  if (line.length > MAX_LINE_BYTES) return undefined;
  const f = line.trim().split(/[ \t]+/);
  if (f.length !== 5) return undefined;
  const [expiry, mac, ip, hostname, clientId] = f as [string, string, string, string, string];
  if (!EXPIRY.test(expiry) || !MAC.test(mac) || !isIpv4(ip)) return undefined;
  if (hostname.length > MAX_HOSTNAME || clientId.length > CLIENT_ID_MAX) return undefined;
  if (!TOKEN.test(hostname) || !TOKEN.test(clientId)) return undefined;
  return {
    expires: Number(expiry),
    mac: mac.toLowerCase(),
    ip,
    hostname: hostname === '*' ? '' : hostname,
    clientId: clientId === '*' ? '' : clientId,
  };
}

/** IAID: a 32-bit number, "T" in front for a temporary address (IA_TA) */
const IAID = /^T?(0|[1-9][0-9]{0,9})$/;
const IPV6 = /^[0-9a-fA-F:.]{2,45}$/;

/** A textual IPv6 address as dnsmasq writes it (inet_ntop): hex groups, one "::" at most. */
export function isIpv6(s: string): boolean {
  if (!IPV6.test(s) || s.includes(':::')) return false;
  const halves = s.split('::');
  if (halves.length > 2) return false;
  const groups = halves.flatMap((h) => (h === '' ? [] : h.split(':')));
  // an embedded IPv4 address (::ffff:1.2.3.4) counts as two groups
  const last = groups[groups.length - 1];
  const v4 = last !== undefined && last.includes('.');
  if (v4 && !isIpv4(last!)) return false;
  const hex = v4 ? groups.slice(0, -1) : groups;
  if (!hex.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return false;
  const n = hex.length + (v4 ? 2 : 0);
  return halves.length === 2 ? n <= 7 : n === 8;
}

/**
 * The MAC address a DUID carries, or "": DUID-LLT (type 1) and DUID-LL (type 3) of hardware type
 * 1 (Ethernet) end with it; DUID-EN and DUID-UUID carry none.
 */
export function macOfDuid(duid: string): string {
  const b = duid.toLowerCase().split(':');
  if (b.length === 14 && b[0] === '00' && b[1] === '01' && b[2] === '00' && b[3] === '01') return b.slice(8).join(':');
  if (b.length === 10 && b[0] === '00' && b[1] === '03' && b[2] === '00' && b[3] === '01') return b.slice(4).join(':');
  return '';
}

/** One line of the IPv6 part, or undefined when it is not a DHCPv6 lease. */
export function parseLease6Line(line: string): Lease | undefined {
  if (line.length > MAX_LINE_BYTES) return undefined;
  const f = line.trim().split(/[ \t]+/);
  if (f.length !== 5) return undefined;
  const [expiry, iaid, ip, hostname, duid] = f as [string, string, string, string, string];
  if (!EXPIRY.test(expiry) || !IAID.test(iaid) || Number(iaid.replace('T', '')) > 0xffffffff || !isIpv6(ip)) return undefined;
  if (hostname.length > MAX_HOSTNAME || duid.length > CLIENT_ID_MAX) return undefined;
  if (!TOKEN.test(hostname) || (duid !== '*' && !/^[0-9a-f]{2}(:[0-9a-f]{2})*$/i.test(duid))) return undefined;
  const clientId = duid === '*' ? '' : duid.toLowerCase();
  return { expires: Number(expiry), mac: macOfDuid(clientId), ip: ip.toLowerCase(), hostname: hostname === '*' ? '' : hostname, clientId, iaid };
}

/** More lease lines than MAX_LEASES (or the limit given): not a file of a valid configuration. */
export class TooManyLeases extends Error {
  override name = 'TooManyLeases';
}

/**
 * Incremental parser: push() text as it comes (lines may span pushes), end() for the result.
 * A line longer than MAX_LINE_BYTES is counted as malformed without being kept.
 */
export class LeaseParser {
  private readonly leases: Lease[] = [];
  private malformed = 0;
  private ipv6 = false;
  private carry = '';
  /** inside a line already known to be too long: drop text up to the next newline */
  private skipping = false;

  constructor(private readonly maxLeases = MAX_LEASES) {}

  push(text: string): void {
    let start = 0;
    for (;;) {
      const nl = text.indexOf('\n', start);
      if (nl === -1) break;
      const piece = text.slice(start, nl);
      start = nl + 1;
      if (this.skipping) {
        this.skipping = false;
        continue;
      }
      const line = this.carry ? this.carry + piece : piece;
      this.carry = '';
      this.line(line);
    }
    if (this.skipping || start === text.length) return;
    this.carry += text.slice(start);
    if (this.carry.length > MAX_LINE_BYTES) {
      this.carry = '';
      this.skipping = true;
      this.malformed += 1;
    }
  }

  end(): ParsedLeases {
    if (!this.skipping && this.carry) this.line(this.carry);
    this.carry = '';
    return { leases: this.leases, malformed: this.malformed };
  }

  private line(line: string): void {
    if (line.length > MAX_LINE_BYTES) {
      this.malformed += 1;
      return;
    }
    if (line.trim() === '') return;
    if (/^duid[ \t]/.test(line)) {
      this.ipv6 = true;
      return;
    }
    const lease = this.ipv6 ? parseLease6Line(line) : parseLeaseLine(line);
    if (!lease) {
      this.malformed += 1;
      return;
    }
    if (this.leases.length >= this.maxLeases) throw new TooManyLeases(`holds more than ${this.maxLeases} leases`);
    this.leases.push(lease);
  }
}

/** Parse a whole text at once (small inputs; files go through readLeaseFile). No lease-count limit. */
export function parseLeases(text: string): ParsedLeases {
  const p = new LeaseParser(Infinity);
  p.push(text);
  return p.end();
}

/** Text parsed between two yields to the event loop. */
const SLICE_CHARS = 128 * 1024;

const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Parse text that arrives in chunks, yielding to the event loop after every SLICE_CHARS
 * characters, however large one chunk is. Throws TooManyLeases past `maxLeases`.
 */
export async function parseLeaseChunks(chunks: AsyncIterable<string> | Iterable<string>, maxLeases = MAX_LEASES): Promise<ParsedLeases> {
  const p = new LeaseParser(maxLeases);
  for await (const chunk of chunks) {
    for (let at = 0; at < chunk.length; at += SLICE_CHARS) {
      p.push(chunk.slice(at, at + SLICE_CHARS));
      await yieldToLoop();
    }
  }
  return p.end();
}

/** What a file was when it was opened: the cache key of lease-cache.ts. */
export interface FileIdentity {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

export interface ReadLeasesOptions {
  /** refuse a larger file (default MAX_FILE_BYTES) */
  maxBytes?: number;
  /** refuse a file with more leases (default MAX_LEASES) */
  maxLeases?: number;
}

const READ_CHUNK = 256 * 1024;

/**
 * Read and parse a lease file; a missing file has no leases (and no identity). Never follows
 * a symlink, never blocks on a FIFO. Throws LeaseFileError naming the file and the problem.
 */
export async function readLeaseFile(file: string, opts: ReadLeasesOptions = {}): Promise<ParsedLeases & { identity?: FileIdentity }> {
  const maxBytes = opts.maxBytes ?? MAX_FILE_BYTES;
  const maxLeases = opts.maxLeases ?? MAX_LEASES;
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
    const st = await fh.stat({ bigint: true });
    if (!st.isFile()) throw new LeaseFileError(file, 'is not a regular file');
    if (st.size > BigInt(maxBytes)) throw new LeaseFileError(file, tooBig(st.size, maxBytes));
    const identity: FileIdentity = { dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
    const handle = fh;
    // Read to the end (the file may have grown since fstat), but never past maxBytes.
    async function* chunks(): AsyncGenerator<string> {
      const buf = Buffer.allocUnsafe(READ_CHUNK);
      let total = 0;
      for (;;) {
        const { bytesRead } = await handle.read(buf, 0, READ_CHUNK, null);
        if (bytesRead === 0) return;
        total += bytesRead;
        if (total > maxBytes) throw new LeaseFileError(file, tooBig(BigInt(total), maxBytes));
        // Lease lines are ASCII: latin1 maps each byte to one character, and any other byte
        // makes its line malformed (it is no printable ASCII token).
        yield buf.toString('latin1', 0, bytesRead);
      }
    }
    try {
      return { ...(await parseLeaseChunks(chunks(), maxLeases)), identity };
    } catch (err) {
      if (err instanceof TooManyLeases) throw new LeaseFileError(file, `${err.message}, more than any network may have`, { cause: err });
      if (err instanceof LeaseFileError) throw err;
      throw new LeaseFileError(file, `cannot read: ${(err as Error).message}`, { cause: err });
    }
  } finally {
    await fh.close();
  }
}

function tooBig(size: bigint, maxBytes: number): string {
  return `is ${size} bytes, over the ${maxBytes}-byte limit (${MAX_LEASES} leases of the longest line dnsmasq writes)`;
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

/** How the watcher reads the file: readLeases by default, or a LeaseCache's snapshot. */
export type LeaseReader = (file: string) => Promise<readonly Lease[]>;

const key = (l: Lease) => `${l.mac} ${l.ip}`;

/** Lease events handed out between two yields to the event loop. */
const EVENT_SLICE = 256;

/**
 * Watch a lease file (through its folder, as dnsmasq may create or replace it) and report
 * leases that appear or disappear, keyed by MAC and address. Read errors go to `onError`.
 */
export function watchLeases(
  file: string,
  cb: (e: LeaseEvent) => void,
  opts: { debounceMs?: number; onError?: (err: Error) => void; read?: LeaseReader } = {},
): LeaseWatcher {
  const debounceMs = opts.debounceMs ?? 50;
  const read = opts.read ?? readLeases;
  const base = path.basename(file);
  let known = new Map<string, Lease>();
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();

  const refresh = async (emit: boolean): Promise<void> => {
    let leases: readonly Lease[];
    try {
      leases = await read(file);
    } catch (err) {
      opts.onError?.(err as Error);
      return;
    }
    if (closed) return;
    const next = new Map(leases.map((l) => [key(l), l]));
    const before = known;
    known = next;
    if (!emit) return;
    // A file that gains thousands of leases at once gives thousands of events, each of which
    // costs its listeners work (a D-Bus signal, a status): hand them out in slices.
    let sent = 0;
    const send = async (e: LeaseEvent) => {
      cb(e);
      if (++sent % EVENT_SLICE === 0) await yieldToLoop();
    };
    for (const [k, l] of before) if (!next.has(k) && !closed) await send({ type: 'removed', lease: l });
    for (const [k, l] of next) if (!before.has(k) && !closed) await send({ type: 'added', lease: l });
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
