/**
 * The networks users created: one JSON file of vnetd's own, $VNET_STATE_DIR/user-networks/
 * networks.json, never beside the admin's definitions. Read once when vnetd starts (checked
 * record by record: a corrupt file is named and no user network is served from it, nor is it
 * overwritten), kept in memory, written whole and atomically on each change. Bounded: at most
 * MAX_USER_NETWORKS records (each small: names and lists are bounded where they come in), and a
 * file larger than MAX_FILE_BYTES is refused unread.
 */
import { closeSync, constants, fstatSync, mkdirSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import { accountNameProblem, ifnameProblem } from '../config/names.js';
import { parseIfAddress, parseSubnet } from '../net/ip.js';
import { writeFileAtomic } from '../sys/atomic-file.js';
import { Mutex } from '../sys/mutex.js';
import { ownerNameProblem, userNetworkNameProblem } from './names.js';

/** Every user network on the host, whoever owns it. */
export const MAX_USER_NETWORKS = 4096;
/** The users one network may list. */
export const MAX_LISTED_USERS = 32;
const MAX_FILE_BYTES = 8 * 1024 * 1024;

export interface UserNetworkRecord {
  uid: number;
  /** the owner's name when it was created: the OWNER of OWNER:NAME */
  user: string;
  name: string;
  bridge: string;
  /** IPv4 subnet, "10.231.0.0/24": the bridge has its first address */
  subnet: string;
  /** the bridge's IPv6 address, "fd12:3456:789a:1::1/64" */
  address6?: string;
  forward: 'nat' | 'isolated';
  dhcp: boolean;
  /** users the owner let in, by name and by the uid the name had then */
  allowUsers: Array<{ user: string; uid: number }>;
  /** ISO time */
  created: string;
}

interface StoreFile {
  version: 1;
  networks: UserNetworkRecord[];
}

export class UserStoreError extends Error {
  override name = 'UserStoreError';
}

function isUid(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v < 2 ** 32;
}

/** Why `r` is not a record vnetd wrote, or undefined. */
export function recordProblem(r: unknown): string | undefined {
  if (typeof r !== 'object' || r === null) return 'not an object';
  const x = r as Record<string, unknown>;
  if (!isUid(x.uid)) return 'bad uid';
  if (typeof x.user !== 'string' || ownerNameProblem(x.user)) return 'bad user';
  if (userNetworkNameProblem(x.name)) return 'bad name';
  if (ifnameProblem(x.bridge)) return 'bad bridge';
  const s = typeof x.subnet === 'string' ? parseSubnet(x.subnet) : undefined;
  if (!s || s.family !== 4) return 'bad subnet';
  if (x.address6 !== undefined && (typeof x.address6 !== 'string' || parseIfAddress(x.address6)?.family !== 6)) return 'bad address6';
  if (x.forward !== 'nat' && x.forward !== 'isolated') return 'bad forward';
  if (typeof x.dhcp !== 'boolean') return 'bad dhcp';
  if (!Array.isArray(x.allowUsers) || x.allowUsers.length > MAX_LISTED_USERS) return 'bad allowUsers';
  for (const a of x.allowUsers as unknown[]) {
    const e = a as { user?: unknown; uid?: unknown } | null;
    if (!e || typeof e.user !== 'string' || accountNameProblem(e.user) || !isUid(e.uid)) return 'bad allowUsers entry';
  }
  if (typeof x.created !== 'string' || x.created.length > 64) return 'bad created';
  return undefined;
}

export class UserNetworkStore {
  private records: UserNetworkRecord[] = [];
  /** why the file could not be used (then nothing is served from it and nothing written over it) */
  private broken?: string;
  private readonly writing = new Mutex();

  constructor(readonly file: string) {
    this.load();
  }

  /** Every record (a copy of the list). */
  all(): UserNetworkRecord[] {
    return [...this.records];
  }

  /** Why user networks cannot be served from the file, if so. */
  problem(): string | undefined {
    return this.broken;
  }

  async add(rec: UserNetworkRecord): Promise<void> {
    await this.writing.run(async () => {
      this.usable();
      if (this.records.length >= MAX_USER_NETWORKS) throw new UserStoreError(`this host has ${this.records.length} user networks, the most vnet keeps`);
      await this.save([...this.records, rec]);
    });
  }

  /** Remove uid's network `name`; true when there was one. */
  async remove(uid: number, name: string): Promise<boolean> {
    return this.writing.run(async () => {
      this.usable();
      const next = this.records.filter((r) => !(r.uid === uid && r.name === name));
      if (next.length === this.records.length) return false;
      await this.save(next);
      return true;
    });
  }

  private usable(): void {
    if (this.broken) throw new UserStoreError(this.broken);
  }

  private async save(records: UserNetworkRecord[]): Promise<void> {
    const body: StoreFile = { version: 1, networks: records };
    mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
    // root's alone: it names users and their networks, which only they and root may see
    await writeFileAtomic(this.file, `${JSON.stringify(body, null, 1)}\n`, { mode: 0o600 });
    this.records = records;
  }

  private load(): void {
    let fd: number;
    try {
      fd = openSync(this.file, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      this.broken = `${this.file} cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)}); no user network is served until it can`;
      return;
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile() || st.size > MAX_FILE_BYTES) {
        this.broken = `${this.file} is not a regular file of at most ${MAX_FILE_BYTES} bytes; move it aside`;
        return;
      }
      const buf = Buffer.alloc(st.size);
      let at = 0;
      while (at < buf.length) {
        const n = readSync(fd, buf, at, buf.length - at, at);
        if (n === 0) break;
        at += n;
      }
      const v = JSON.parse(buf.subarray(0, at).toString('utf8')) as StoreFile;
      if (v?.version !== 1 || !Array.isArray(v.networks) || v.networks.length > MAX_USER_NETWORKS) throw new Error('unexpected shape');
      v.networks.forEach((r, i) => {
        const p = recordProblem(r);
        if (p) throw new Error(`network ${i}: ${p}`);
      });
      this.records = v.networks;
    } catch (err) {
      this.broken = `${this.file} is corrupt (${(err as Error).message}); move it aside (its networks are then forgotten)`;
    } finally {
      closeSync(fd);
    }
  }
}
