/**
 * A real systemd-resolved for tests, never installed: Debian's package would replace
 * /etc/resolv.conf and cut the machine off its resolvers. `apt-get download` fetches the
 * package once and `dpkg-deb -x` extracts it into build/systemd-resolved (reused after that).
 * It runs inside a test network namespace and a private mount namespace: its account
 * (systemd-resolve, given the uid of `nobody`, so that the bus outside can name the peer) exists
 * only in bind-mounted copies of /etc/passwd and /etc/group, and a tmpfs over /run/systemd holds
 * its runtime files. It joins the private bus it is given (DBUS_SYSTEM_BUS_ADDRESS).
 */
import { execa, type ResultPromise } from 'execa';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { tempDir, stopChild, trackPid, type Netns } from './netns.js';
import { ROOT } from './vnetd.js';

export const RESOLVED_ROOT = path.join(ROOT, 'build/systemd-resolved');
export const RESOLVED_BIN = path.join(RESOLVED_ROOT, 'lib/systemd/systemd-resolved');
export const RESOLVECTL = path.join(RESOLVED_ROOT, 'usr/bin/resolvectl');
/** the private bus allowing the resolved policy (a fixture including dbus-system-test.conf) */
export const RESOLVED_BUS_CONFIG = path.join(ROOT, 'test/fixtures/dbus-resolved-test.conf');

/** build/systemd-resolved, extracted from Debian's package (downloaded, not installed) when missing. */
export async function extractResolved(): Promise<void> {
  if (existsSync(RESOLVED_BIN) && existsSync(RESOLVECTL)) return;
  const dl = tempDir('vnet-resolved-deb-');
  await execa('apt-get', ['download', 'systemd-resolved'], { cwd: dl, stdin: 'ignore' });
  const deb = readdirSync(dl).find((f) => f.endsWith('.deb'));
  if (!deb) throw new Error('apt-get download systemd-resolved fetched no .deb');
  rmSync(RESOLVED_ROOT, { recursive: true, force: true });
  mkdirSync(RESOLVED_ROOT, { recursive: true });
  await execa('dpkg-deb', ['-x', path.join(dl, deb), RESOLVED_ROOT], { stdin: 'ignore' });
}

export class TestResolved {
  log = '';
  private constructor(private readonly proc: ResultPromise) {}

  static async start(ns: Netns, busAddress: string): Promise<TestResolved> {
    const dir = tempDir('vnet-resolved-');
    const nobody = 65534;
    writeFileSync(path.join(dir, 'passwd'), `${readFileSync('/etc/passwd', 'utf8')}systemd-resolve:x:${nobody}:${nobody}::/run/systemd/resolve:/usr/sbin/nologin\n`);
    writeFileSync(path.join(dir, 'group'), `${readFileSync('/etc/group', 'utf8')}systemd-resolve:x:${nobody}:\n`);
    const script = [
      'set -e',
      'mount --make-rprivate /',
      'mount --bind "$1/passwd" /etc/passwd',
      'mount --bind "$1/group" /etc/group',
      'mkdir -p /run/systemd',
      'mount -t tmpfs vnet-test-resolved /run/systemd',
      'mkdir /run/systemd/resolve',
      'chown systemd-resolve:systemd-resolve /run/systemd/resolve',
      'exec "$2"',
    ].join('\n');
    const proc = execa('ip', ['netns', 'exec', ns.name, 'unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', dir, RESOLVED_BIN], {
      env: { DBUS_SYSTEM_BUS_ADDRESS: busAddress, SYSTEMD_LOG_LEVEL: 'debug', SYSTEMD_LOG_TARGET: 'console', PATH: process.env.PATH ?? '' },
      extendEnv: false,
      reject: false,
      stdin: 'ignore',
      buffer: false,
    });
    trackPid(proc.pid);
    const r = new TestResolved(proc);
    proc.stdout?.on('data', (d: Buffer) => (r.log += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (r.log += d.toString()));
    return r;
  }

  async stop(): Promise<void> {
    await stopChild(this.proc);
  }
}
