/**
 * The nft backend: hands a transaction (firewall/table.ts) to one `nft -j -f FILE` run (one
 * atomic transaction) and reads vnet's table back. No policy here.
 *
 * Why a file and not `-f -`: nft 1.0.6 opens "/dev/stdin" by path, and Node's stdio pipes
 * are unix sockets, which cannot be opened that way (ENXIO). The file lives in a fresh
 * 0700 directory from mkdtemp and is removed right after the run.
 */
import { run, type RunResult } from '../sys/run.js';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { TABLE } from './layout.js';
import { emptyTable, parseListing, type TableState, type Transaction } from './table.js';

export class NftError extends Error {
  override name = 'NftError';
}

export interface NftOptions {
  /** nft binary, default "nft" (found on PATH) */
  binary?: string;
  /** milliseconds one nft run may take, default 10 000 */
  timeoutMs?: number;
  /** where the transaction file is written (in a private subdirectory), default os.tmpdir() */
  tmpDir?: string;
}


/** how long the pid of an nft run that changed the ruleset is remembered for the monitor */
const OWN_PID_MS = 10_000;

export class Nft {
  readonly binary: string;
  readonly timeoutMs: number;
  readonly tmpDir: string;
  /** pids of vnet's own nft runs that change the ruleset, with when they started */
  private readonly own = new Map<number, number>();

  constructor(opts: NftOptions = {}) {
    this.binary = opts.binary ?? 'nft';
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.tmpDir = opts.tmpDir ?? os.tmpdir();
  }

  /**
   * Was the ruleset change that nft process `pid` made one of vnet's own transactions? Answers
   * true once per run (a pid can be reused later by someone else's nft), and only for recent runs.
   */
  ownTransaction(pid: number): boolean {
    const at = this.own.get(pid);
    this.own.delete(pid);
    return at !== undefined && Date.now() - at < OWN_PID_MS;
  }

  private async run(args: string[], opts: { changes?: boolean } = {}): Promise<RunResult> {
    try {
      const remember = (pid: number) => {
        // known before the transaction runs, so the monitor can tell it is vnet's
        const now = Date.now();
        for (const [old, at] of this.own) if (now - at >= OWN_PID_MS) this.own.delete(old);
        this.own.set(pid, now);
      };
      return await run(this.binary, args, { timeoutMs: this.timeoutMs, ...(opts.changes ? { onSpawn: remember } : {}) });
    } catch (cause) {
      // never ran to completion: missing binary, timeout, signal
      throw new NftError((cause as Error).message, { cause });
    }
  }

  /** Apply one transaction: all of it or nothing. */
  async apply(cmds: Transaction): Promise<void> {
    let dir: string;
    try {
      dir = await mkdtemp(path.join(this.tmpDir, 'vnet-nft-'));
    } catch (cause) {
      throw new NftError(`cannot create a directory for the nft transaction in ${this.tmpDir}: ${(cause as Error).message}`, { cause });
    }
    try {
      const file = path.join(dir, 'ruleset.json');
      await writeFile(file, JSON.stringify(cmds), { mode: 0o600 }).catch((cause: Error) => {
        throw new NftError(`cannot write the nft transaction to ${file}: ${cause.message}`, { cause });
      });
      const r = await this.run(['-j', '-f', file], { changes: true });
      if (r.exitCode !== 0) {
        throw new NftError(`nft rejected the ruleset: ${r.stderr.trim() || `exit code ${r.exitCode}`}`, { cause: r });
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** What vnet's table holds now (an empty state when there is no table). */
  async list(): Promise<TableState> {
    if (!(await this.hasTable())) return emptyTable();
    const args = ['-j', 'list', 'table', TABLE.family, TABLE.name];
    const r = await this.run(args);
    if (r.exitCode !== 0) throw new NftError(`nft ${args.join(' ')} failed: ${r.stderr.trim() || `exit code ${r.exitCode}`}`, { cause: r });
    return parseListing(parseJson(r.stdout, args));
  }

  /** Whether vnet's table exists (read from the table list, not inferred from an error). */
  async hasTable(): Promise<boolean> {
    const args = ['-j', 'list', 'tables', TABLE.family];
    const r = await this.run(args);
    if (r.exitCode !== 0) {
      throw new NftError(`nft ${args.join(' ')} failed: ${r.stderr.trim() || `exit code ${r.exitCode}`}`, { cause: r });
    }
    const list = (parseJson(r.stdout, args) as { nftables?: unknown }).nftables;
    if (!Array.isArray(list)) return false;
    return list.some((item: unknown) => {
      const t = (item as { table?: { family?: unknown; name?: unknown } } | null)?.table;
      return t?.family === TABLE.family && t?.name === TABLE.name;
    });
  }
}

function parseJson(text: string, args: string[]): unknown {
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new NftError(`nft ${args.join(' ')} printed output that is not JSON: ${text.slice(0, 200)}`, { cause });
  }
}
