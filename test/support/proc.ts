/** What tests read of a process in /proc. */
import { readFileSync } from 'node:fs';

/** /proc/PID/status as a table: "Uid" → "0\t0\t0\t0", "Groups" → "...". */
export function procStatus(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}
