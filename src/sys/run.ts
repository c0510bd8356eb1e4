/**
 * Run a program with an argument array (never a shell) and collect what it printed. A non-zero
 * exit is a result, not an error; a program that could not start, or ran past its time and was
 * killed, is a RunError naming it. Node's own child_process: vnetd starts without loading a
 * process library (execa costs 100-150 ms of start-up, measured for issue 15).
 */
import { execFile } from 'node:child_process';

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export class RunError extends Error {
  override name = 'RunError';
}

export interface RunOptions {
  /** kill it (SIGKILL) after this long, ms */
  timeoutMs: number;
  env?: NodeJS.ProcessEnv;
  /** bound on what it may print, bytes (default 64 MiB) */
  maxBuffer?: number;
  /** told the child's pid as soon as it is spawned, before it runs to its end */
  onSpawn?: (pid: number) => void;
}

export function run(binary: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const what = `${binary} ${args.join(' ')}`;
    const child = execFile(
      binary,
      args,
      { timeout: opts.timeoutMs, killSignal: 'SIGKILL', maxBuffer: opts.maxBuffer ?? 64 * 1024 * 1024, encoding: 'utf8', ...(opts.env ? { env: opts.env } : {}) },
      (err, stdout, stderr) => {
        if (!err) return resolve({ exitCode: 0, stdout, stderr });
        const e = err as NodeJS.ErrnoException & { code?: unknown; killed?: boolean; signal?: string };
        if (typeof e.code === 'number') return resolve({ exitCode: e.code, stdout, stderr });
        if (e.killed || e.signal) return reject(new RunError(`${what} timed out after ${opts.timeoutMs} ms (killed by ${e.signal ?? 'SIGKILL'})`, { cause: err }));
        reject(new RunError(`${what} could not run: ${e.message}`, { cause: err }));
      },
    );
    if (child.pid !== undefined) opts.onSpawn?.(child.pid);
    child.stdin?.end();
  });
}
