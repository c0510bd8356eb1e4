/**
 * `vnet up` run as root starts vnetd in the background when none answers, so the quick start
 * needs no systemd. vnetd writes its own log, capped (8 MiB and one rotated vnetd.log.1): a guest
 * that makes it log a lot must not fill /run.
 */
import { spawn } from 'node:child_process';
import { closeSync, constants, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { call } from '../api/client.js';
import { VnetError } from '../api/errors.js';
import type { Paths } from '../config/paths.js';

export async function ensureDaemon(paths: Paths, say: (line: string) => void): Promise<void> {
  try {
    await call(paths.socket, 'ping', {}, 5000);
    return;
  } catch (err) {
    if (!(err instanceof VnetError) || err.code !== 'ENOTRUNNING') throw err;
    if (process.getuid?.() !== 0) throw new VnetError('ENOTRUNNING', `${err.message}; start it as root (\`sudo vnet up NAME\` or \`systemctl start vnetd.socket\`)`);
  }
  mkdirSync(paths.runtimeDir, { recursive: true, mode: 0o755 });
  // its stdout and stderr (a crash message, if any) go to the same file; a second vnetd racing
  // this one says there why it stopped
  const logFile = process.env.VNET_LOG_FILE || path.join(paths.runtimeDir, 'vnetd.log');
  const out = openSync(logFile, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o640);
  const vnetd = fileURLToPath(new URL('../../bin/vnetd', import.meta.url));
  const child = spawn(process.execPath, [vnetd], { detached: true, stdio: ['ignore', out, out], env: { ...process.env, VNET_LOG_FILE: logFile } });
  closeSync(out);
  child.unref();
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      await call(paths.socket, 'ping', {}, 2000);
      say(`vnet: started vnetd (pid ${child.pid}, log ${logFile})`);
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new VnetError('ETIMEDOUT', `vnetd did not start within 15 s; see ${logFile}`, { cause: err });
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
