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

export function monitorRuleset(onChange: () => void, opts: { binary?: string; debounceMs?: number; onExit?: (code: number | null) => void } = {}): RulesetMonitor {
  const child: ChildProcess = spawn(opts.binary ?? 'nft', ['-j', 'monitor'], {
    stdio: ['ignore', 'pipe', 'ignore'],
    env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' },
  });
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const lines = createInterface({ input: child.stdout! });
  lines.on('line', () => {
    clearTimeout(timer);
    timer = setTimeout(onChange, opts.debounceMs ?? 300);
  });
  child.on('exit', (code) => {
    clearTimeout(timer);
    if (!closed) opts.onExit?.(code);
  });
  child.on('error', () => undefined);
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      lines.close();
      child.kill('SIGTERM');
    },
  };
}
