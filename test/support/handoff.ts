/**
 * One tap hand-off through the C helper, run exactly as QEMU runs it: qemu-side.py makes
 * the socketpair, runs vnet-bridge-helper with only that fd open and reports what it got.
 */
import { execa } from 'execa';
import path from 'node:path';
import { trackPid, untrackPid } from './netns.js';
import { HELPER, ROOT } from './vnetd.js';

export const QEMU_SIDE = path.join(ROOT, 'test/support/qemu-side.py');

/** qemu-side.py's result line */
export interface HandoffResult {
  exit: number;
  stderr: string;
  byte?: number;
  nfds?: number;
  tap?: string;
  flags?: number;
  recv_error?: string;
}

export interface HandoffOptions {
  /** the VNET_RUNTIME_DIR the helper finds vnetd's socket in */
  runtimeDir: string;
  /** run as this uid (and gid), no other groups; default nobody (65534) */
  uid?: number;
  /** supplementary groups instead of none */
  groups?: number[];
  /** ask for a vnet header (QEMU's --use-vnet); default true */
  vnet?: boolean;
  /** keep the tap open until release() */
  hold?: boolean;
  /** how long to wait for the result line before killing qemu-side and throwing; default 30 s */
  timeoutMs?: number;
}

export interface Handoff {
  result: HandoffResult;
  /** qemu-side's pid: the tap's holder, as QEMU would be */
  pid: number;
  /** close the tap (end qemu-side's stdin) and wait for qemu-side to exit */
  release(): Promise<void>;
}

/** Run the helper through a QEMU-like parent as `uid`; with hold, keep the tap open until release(). */
export async function handoff(bridge: string, opts: HandoffOptions): Promise<Handoff> {
  const uid = opts.uid ?? 65534;
  const ms = opts.timeoutMs ?? 30_000;
  const groups = opts.groups?.length ? `--groups=${opts.groups.join(',')}` : '--clear-groups';
  const args = [`--reuid=${uid}`, `--regid=${uid}`, groups, '/usr/bin/python3', QEMU_SIDE];
  if (opts.hold) args.push('--hold', '-1');
  if (opts.vnet === false) args.push('--no-vnet');
  args.push(HELPER, bridge);
  const proc = execa('setpriv', args, {
    env: { ...process.env, VNET_RUNTIME_DIR: opts.runtimeDir },
    stdin: 'pipe',
    buffer: false,
    reject: false,
  });
  const pid = proc.pid!;
  trackPid(pid);
  // once it has exited its pid may be reused: cleanup must not kill that
  void proc.then(() => untrackPid(pid));
  let out = '';
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  let timer: NodeJS.Timeout | undefined;
  let line: string;
  try {
    line = await new Promise<string>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`qemu-side gave no result within ${ms} ms: stdout ${JSON.stringify(out)}, stderr ${JSON.stringify(err)}`)), ms);
      proc.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out.split('\n')[0]!);
      });
      // 'close', not 'exit': by then all of stdout has been read
      proc.on('close', () => (out.includes('\n') ? undefined : reject(new Error(`qemu-side exited without a result: stdout ${JSON.stringify(out)}, stderr ${JSON.stringify(err)}`))));
    });
  } catch (e) {
    proc.kill('SIGKILL');
    await proc;
    throw e;
  } finally {
    clearTimeout(timer);
  }
  const result = JSON.parse(line) as HandoffResult;
  const release = async () => {
    proc.stdin!.end();
    await proc;
  };
  if (!opts.hold) await release();
  return { result, pid, release };
}
