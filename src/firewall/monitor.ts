/**
 * Notices when someone else changes the ruleset (a firewall reload, `nft flush ruleset`)
 * without polling: `nft monitor` reports every change; after a quiet moment the
 * daemon's callback checks vnet's table and re-applies it when it differs. Runs only
 * while vnet has networks in its table, so an idle machine has no such process.
 *
 * Each transaction ends with "# new generation N by process PID (COMM)" (the plain output
 * has it; `-j monitor` does not). A transaction vnet's own nft made (`ownedBy(PID)`) is not
 * someone else's change: without this, every `vnet up` woke the check, which lists the whole
 * table under the daemon's lock, so each bring-up grew slower with the number of networks.
 * Lines with no such trailer count as someone else's.
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
  /** did vnet itself make the transaction of this nft process? */
  ownedBy?: (pid: number) => boolean;
}

const GENERATION = /^# new generation \d+ by process (\d+) /;

export function monitorRuleset(onChange: () => void, opts: MonitorOptions = {}): RulesetMonitor {
  const child: ChildProcess = spawn(opts.binary ?? 'nft', ['monitor'], {
    stdio: ['ignore', 'pipe', 'ignore'],
    env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' },
  });
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  let spawnError: Error | undefined;
  /** someone else's transaction was seen since the last check */
  let foreign = false;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      foreign = false;
      onChange();
    }, opts.debounceMs ?? 300);
  };
  const lines = createInterface({ input: child.stdout! });
  lines.on('line', (line) => {
    const gen = GENERATION.exec(line);
    if (!gen) {
      // a change whose author the trailer will tell: armed until then, as if foreign
      if (line.trim() !== '') arm();
      return;
    }
    if (!opts.ownedBy?.(Number(gen[1]))) foreign = true;
    if (foreign) arm();
    else clearTimeout(timer); // only vnet's own transactions since the last check
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
