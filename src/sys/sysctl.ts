/**
 * /proc/sys of vnetd's own network namespace, by key path ("net/ipv4/ip_forward"). Keys come
 * from vnet's own contributors, with interface names already validated (no "/" or "..").
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { SysctlBackend } from '../reconcile/backends.js';

export class ProcSysctl implements SysctlBackend {
  constructor(private readonly root = '/proc/sys') {}

  private file(key: string): string {
    if (key.split('/').some((p) => p === '' || p === '.' || p === '..')) throw new RangeError(`sysctl key ${JSON.stringify(key)} is not a plain path`);
    return path.join(this.root, key);
  }

  async read(key: string): Promise<string | undefined> {
    try {
      return (await readFile(this.file(key), 'utf8')).trim();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async write(key: string, value: string): Promise<void> {
    await writeFile(this.file(key), `${value}\n`);
  }
}
