/**
 * Docker beside vnet's table (only with `docker-compat = true` in vnet.toml): while a network is
 * up, its accept rules sit in Docker's DOCKER-USER chain (docker-user-rules.ts says which and
 * why). Rules in a chain iptables-nft made must be written in iptables' own format, so this runs
 * `iptables`, the same program Docker runs, with argument arrays (no shell).
 *
 * Without the chain (Docker not running, or Docker's nftables backend, which has no DOCKER-USER)
 * nothing changes: bound() is empty and bind() does nothing; `vnet doctor` tells the admin.
 * Docker keeps DOCKER-USER and its rules when it restarts; a chain Docker makes after a network
 * came up (its first start since boot) gets vnet's rules at that network's next bring-up or when
 * vnetd restarts.
 */
import { run } from '../sys/run.js';
import type { Logger } from 'pino';
import type { HostFirewall } from '../reconcile/backends.js';
import type { ForwardMode } from '../spec/spec.js';
import { boundBridges, DOCKER_USER, dockerUserRules, insertPosition, parseFilterListing, rulesOf, type DockerUserChain } from './docker-user-rules.js';

export interface DockerUserOptions {
  log: Logger;
  /** iptables binary, default "iptables" (found on PATH, as Docker finds it) */
  binary?: string;
  /** ms one iptables run may take, default 10 000 */
  timeoutMs?: number;
}

export class DockerUserError extends Error {
  override name = 'DockerUserError';
}

export class DockerUser implements HostFirewall {
  readonly name = 'docker-user';
  private readonly binary: string;
  private readonly timeoutMs: number;
  private readonly log: Logger;

  constructor(opts: DockerUserOptions) {
    this.log = opts.log;
    this.binary = opts.binary ?? 'iptables';
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  async bound(): Promise<ReadonlySet<string>> {
    try {
      return boundBridges(await this.chain());
    } catch (err) {
      // never a throw here: a teardown must not fail because iptables does not answer
      this.log.warn({ err: (err as Error).message }, 'docker-user: could not list DOCKER-USER');
      return new Set();
    }
  }

  async bind(bridge: string, mode: ForwardMode): Promise<void> {
    const want = dockerUserRules(bridge, mode);
    if (want.length === 0) return;
    let chain = await this.chain();
    if (!chain.exists) {
      this.log.debug({ bridge }, 'docker-user: no DOCKER-USER chain (Docker is not running): nothing to do');
      return;
    }
    // whatever of ours is there for this bridge (a mode before, a rule someone deleted) goes first
    if (rulesOf(chain, bridge).length > 0) {
      await this.remove(chain, bridge);
      chain = await this.chain();
    }
    let at = insertPosition(chain);
    for (const rule of want) await this.iptables(['-I', DOCKER_USER, String(at++), ...rule]);
  }

  async unbind(bridge: string): Promise<void> {
    const chain = await this.chain();
    if (chain.exists) await this.remove(chain, bridge);
  }

  /** Delete vnet's rules for `bridge`, by their full spec (never by position: the chain may have moved). */
  private async remove(chain: DockerUserChain, bridge: string): Promise<void> {
    for (const rule of rulesOf(chain, bridge).reverse()) await this.iptables(['-D', DOCKER_USER, ...rule]);
  }

  private async chain(): Promise<DockerUserChain> {
    return parseFilterListing(await this.iptables(['-S']));
  }

  private async iptables(args: string[]): Promise<string> {
    const argv = ['-w', '-t', 'filter', ...args];
    let r;
    try {
      r = await run(this.binary, argv, { timeoutMs: this.timeoutMs });
    } catch (err) {
      throw new DockerUserError((err as Error).message, { cause: err });
    }
    if (r.exitCode !== 0) throw new DockerUserError(`${this.binary} ${argv.join(' ')} failed: ${r.stderr.trim() || `exit code ${r.exitCode}`}`);
    return r.stdout;
  }
}
