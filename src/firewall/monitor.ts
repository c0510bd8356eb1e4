/**
 * Notices when someone else changes the ruleset (a firewall reload, `nft flush ruleset`)
 * without polling: `nft -j monitor` reports every change; after a quiet moment the
 * daemon's callback checks vnet's table and re-applies it when it differs. Runs only
 * while vnet has networks in its table, so an idle machine has no such process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface RulesetMonitor {
  close(): void;
}

export interface MonitorOptions {
  binary?: string;
  debounceMs?: number;
  /**
   * The monitor ended by itself (not by close()): its exit code, or the error when nft
   * could not be started at all (ENOENT, EAGAIN; code is then negative).
   */
  onExit?: (code: number | null, err?: Error) => void;
}

export function monitorRuleset(onChange: () => void, opts: MonitorOptions = {}): RulesetMonitor {
  const child: ChildProcess = spawn(opts.binary ?? 'nft', ['-j', 'monitor'], {
    stdio: ['ignore', 'pipe', 'ignore'],
    env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' },
  });
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  let spawnError: Error | undefined;
  const lines = createInterface({ input: child.stdout! });
  lines.on('line', () => {
    clearTimeout(timer);
    timer = setTimeout(onChange, opts.debounceMs ?? 300);
  });
  // 'close', not 'exit': a spawn that fails emits only 'error' and then 'close'
  child.on('error', (err) => (spawnError ??= err));
  child.on('close', (code) => {
    clearTimeout(timer);
    if (!closed) opts.onExit?.(code, spawnError);
  });
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      lines.close();
      child.kill('SIGTERM');
    },
  };
}
