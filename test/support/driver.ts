/**
 * A Python driver script run as nobody (setpriv, no groups) with its spec as JSON: its output is
 * collected, and `line(key)` resolves the first `{"key": VALUE}` line it prints, rejecting if the
 * driver exits first or after `timeoutMs`. Its pid is tracked (cleanupAll ends it); stdin stays
 * open, so a driver can wait for it to close.
 */
import { execa, type ResultPromise } from 'execa';
import { trackPid, untrackPid } from './netns.js';

export const NOBODY = 65534;

export interface Driver {
  proc: ResultPromise;
  output(): string;
  line<T>(key: string, timeoutMs?: number): Promise<T>;
}

export function driverAsNobody(script: string, spec: unknown): Driver {
  const proc = execa('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '/usr/bin/python3', script, JSON.stringify(spec)], {
    stdin: 'pipe',
    buffer: false,
    reject: false,
  });
  const pid = proc.pid;
  trackPid(pid);
  void proc.then(() => untrackPid(pid));
  let out = '';
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const line = <T>(key: string, timeoutMs = 120_000) =>
    new Promise<T>((resolve, reject) => {
      const re = new RegExp(`^\\{"${key}": (.*)\\}$`, 'm');
      const look = () => {
        const m = re.exec(out);
        if (!m) return false;
        clearTimeout(timer);
        resolve(JSON.parse(m[1]!) as T);
        return true;
      };
      const timer = setTimeout(() => reject(new Error(`${script} printed no "${key}" within ${timeoutMs / 1000} s: ${out}`)), timeoutMs);
      if (look()) return;
      proc.stdout!.on('data', look);
      proc.on('close', () => reject(new Error(`${script} exited without "${key}": ${out}`)));
    });
  return { proc, output: () => out, line };
}
