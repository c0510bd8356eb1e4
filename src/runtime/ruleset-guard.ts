/**
 * Keeps vnet's nft table as vnet wants it when someone else changes the ruleset (a firewall
 * reload, `nft flush ruleset`): `nft monitor` reports every change without polling; after a
 * quiet moment the guard compares the table with what the networks want, by content, and repairs
 * what differs. Runs only while vnet has rules, so an idle machine has no such process.
 */
import type { Logger } from 'pino';
import { monitorRuleset, type RulesetMonitor } from '../firewall/monitor.js';
import { Backoff } from '../sys/backoff.js';
import type { Clock } from '../sys/clock.js';

export interface GuardOptions {
  log: Logger;
  clock: Clock;
  /** compare and repair (under the daemon's mutex) */
  check(): Promise<void>;
  /** nft binary for the monitor */
  binary?: string;
  /** did vnet itself make the transaction of this nft process? (its own changes need no check) */
  ownedBy?: (pid: number) => boolean;
}

/** restarts of a monitor that keeps ending wait 1 s, 2 s, 4 s ... up to a minute */
const RETRY = { initialMs: 1000, maxMs: 60_000 };

export class RulesetGuard {
  private monitor?: RulesetMonitor;
  private readonly backoff = new Backoff(RETRY);
  private closed = false;
  private wanted = false;

  constructor(private readonly opts: GuardOptions) {}

  /** Watch while vnet has rules in force, stop watching when it has none. */
  watch(hasRules: boolean): void {
    this.wanted = hasRules && !this.closed;
    if (!this.wanted) {
      this.monitor?.close();
      this.monitor = undefined;
      return;
    }
    if (this.monitor) return;
    const started = this.opts.clock.now();
    this.monitor = monitorRuleset(() => void this.opts.check().catch((err) => this.opts.log.error({ err }, 'ruleset check failed')), {
      ...(this.opts.binary ? { binary: this.opts.binary } : {}),
      ...(this.opts.ownedBy ? { ownedBy: this.opts.ownedBy } : {}),
      onExit: (code, err) => {
        this.monitor = undefined;
        // one that ran for at least the longest wait was a good start: back to quick restarts
        if (this.opts.clock.now() - started >= RETRY.maxMs) this.backoff.reset();
        const delay = this.backoff.fail() ?? RETRY.maxMs;
        this.opts.log.warn({ code, err, retryMs: delay }, err ? 'nft monitor could not be started; retrying' : 'nft monitor exited; restarting it');
        this.opts.clock.setTimeout(() => this.watch(this.wanted), delay).unref?.();
      },
    });
  }

  close(): void {
    this.closed = true;
    this.watch(false);
  }
}
