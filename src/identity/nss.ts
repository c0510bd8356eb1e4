/**
 * Users and groups through NSS (files, LDAP, sssd, extrausers: whatever nsswitch.conf says), by
 * `getent` in a child process: asynchronous (a slow directory never blocks the event loop nor
 * the thread pool), isolated (a misbehaving NSS module cannot take vnetd down), bounded in time,
 * and cached for a short while (answers and "no such name" alike).
 */
import { execFile } from 'node:child_process';
import { accountNameProblem } from '../config/names.js';
import { systemClock, type Clock } from '../sys/clock.js';

export interface Identity {
  /** the uid of a user name, undefined when NSS knows no such user */
  uidOf(user: string): Promise<number | undefined>;
  /** the gid of a group name */
  gidOf(group: string): Promise<number | undefined>;
  /** the name of a uid */
  userOf(uid: number): Promise<string | undefined>;
}

export interface NssOptions {
  clock?: Clock;
  /** how long an answer is kept (default 30 s) */
  ttlMs?: number;
  /** longest a lookup may take before it counts as "unknown" (default 5 s) */
  timeoutMs?: number;
  getent?: string;
}

export class NssIdentity implements Identity {
  private readonly cache = new Map<string, { value: string[] | undefined; until: number }>();
  private readonly inflight = new Map<string, Promise<string[] | undefined>>();
  private readonly clock: Clock;
  private readonly ttlMs: number;
  private readonly timeoutMs: number;
  private readonly getent: string;

  constructor(opts: NssOptions = {}) {
    this.clock = opts.clock ?? systemClock;
    this.ttlMs = opts.ttlMs ?? 30_000;
    this.timeoutMs = opts.timeoutMs ?? 5_000;
    this.getent = opts.getent ?? 'getent';
  }

  async uidOf(user: string): Promise<number | undefined> {
    if (accountNameProblem(user)) return undefined;
    return id(await this.lookup('passwd', user));
  }

  async gidOf(group: string): Promise<number | undefined> {
    if (accountNameProblem(group)) return undefined;
    return id(await this.lookup('group', group));
  }

  async userOf(uid: number): Promise<string | undefined> {
    if (!Number.isSafeInteger(uid) || uid < 0) return undefined;
    return (await this.lookup('passwd', String(uid)))?.[0];
  }

  /** One `getent DB KEY` entry split at ':', cached; undefined when there is none. */
  private lookup(db: 'passwd' | 'group', key: string): Promise<string[] | undefined> {
    const k = `${db}\0${key}`;
    const hit = this.cache.get(k);
    if (hit && hit.until > this.clock.now()) return Promise.resolve(hit.value);
    const running = this.inflight.get(k);
    if (running) return running;
    const p = this.run(db, key).then((value) => {
      this.inflight.delete(k);
      this.cache.set(k, { value, until: this.clock.now() + this.ttlMs });
      if (this.cache.size > 4096) this.cache.delete(this.cache.keys().next().value!); // bounded: oldest first
      return value;
    });
    this.inflight.set(k, p);
    return p;
  }

  private run(db: string, key: string): Promise<string[] | undefined> {
    return new Promise((resolve) => {
      // exit 2: no such key; anything else (timeout, a broken module) is also "unknown": grants nothing
      execFile(this.getent, [db, key], { timeout: this.timeoutMs, maxBuffer: 64 * 1024, env: { PATH: '/usr/bin:/bin:/usr/sbin:/sbin' } }, (err, stdout) => {
        if (err) return resolve(undefined);
        const line = String(stdout).split('\n')[0] ?? '';
        const fields = line.split(':');
        resolve(fields.length >= 3 ? fields : undefined);
      });
    });
  }
}

function id(fields: string[] | undefined): number | undefined {
  const v = fields?.[2];
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
}
