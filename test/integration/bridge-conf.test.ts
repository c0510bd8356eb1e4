/**
 * BridgeConf against the real qemu-bridge-helper, in a throwaway network namespace and a
 * private mount namespace where a temp folder stands in for /etc/qemu. The machine's
 * /etc/qemu is never touched: /etc is overlaid (upper layer on a tmpfs) inside the
 * private mount namespace only, so /etc/qemu can be bind-mounted even where it is missing.
 */
import { execa } from 'execa';
import { chmod, lstat, mkdir, readFile, readdir, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BridgeConf, BridgeConfError, renderVnetConf } from '../../src/qemu/bridge-conf.js';
import { writeFileAtomic } from '../../src/sys/atomic-file.js';
import { cleanupAll, createNetns, hostAndWan, tempDir, waitFor, type Netns } from '../support/netns.js';
import { Vnetd, vnetEnv } from '../support/vnetd.js';

/** The spawned processes run the compiled module from dist/, which the global setup built. */
const DIST = path.join(path.resolve(import.meta.dirname, '../..'), 'dist');
const HELPER = '/usr/lib/qemu/qemu-bridge-helper';

/**
 * Runs argv with one end of a socketpair as {FD}, the way QEMU runs the helper, and
 * reports exit code, stderr, how many fds arrived, and the tap's name and master
 * (read while the fd is still open: the tap goes when it closes).
 */
const RUNNER = String.raw`
import json, socket, subprocess, sys, fcntl, struct
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
argv = [x.replace('{FD}', str(b.fileno())) for x in sys.argv[1:]]
p = subprocess.Popen(argv, pass_fds=[b.fileno()], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
b.close()
a.settimeout(20)
fds = []
try:
    _, fds, _, _ = socket.recv_fds(a, 16, 4)
except (OSError, socket.timeout):
    pass
err = p.stderr.read().decode(errors='replace')
rc = p.wait(timeout=20)
tap = master = None
if fds:
    ifr = fcntl.ioctl(fds[0], 0x800454d2, bytes(40))  # TUNGETIFF
    tap = ifr[:16].split(b'\0')[0].decode()
    out = subprocess.run(['ip', '-j', 'link', 'show', 'dev', tap], capture_output=True, text=True).stdout
    master = json.loads(out)[0].get('master')
print(json.dumps({'rc': rc, 'stderr': err, 'fds': len(fds), 'tap': tap, 'master': master}))
`;

interface HelperResult {
  rc: number;
  stderr: string;
  fds: number;
  tap: string | null;
  master: string | null;
}

let ns: Netns;

/** Run the stock helper for `bridge` in `ns`, with `confDir` mounted over /etc/qemu. */
async function runHelper(confDir: string, bridge: string): Promise<HelperResult> {
  const work = tempDir('vnet-ovl-');
  const script = [
    `mount -t tmpfs tmpfs ${work}`,
    `mkdir ${work}/u ${work}/w`,
    `mount -t overlay overlay -o lowerdir=/etc,upperdir=${work}/u,workdir=${work}/w /etc`,
    'mkdir -p /etc/qemu',
    `mount --bind ${confDir} /etc/qemu`,
    `exec ${HELPER} --use-vnet --br=${bridge} --fd={FD}`,
  ].join(' && ');
  const out = await ns.run('python3', ['-c', RUNNER, 'unshare', '-m', '--propagation', 'private', 'sh', '-c', script]);
  return JSON.parse(out) as HelperResult;
}

async function readBytes(file: string): Promise<Buffer> {
  return readFile(file);
}

beforeAll(async () => {
  ns = await createNetns('vbc');
  await ns.run('ip', ['link', 'add', 'vnbr0', 'type', 'bridge']);
  await ns.run('ip', ['link', 'add', 'other0', 'type', 'bridge']);
  await ns.run('ip', ['link', 'add', 'virbr0', 'type', 'bridge']);
  for (const b of ['vnbr0', 'other0', 'virbr0']) await ns.run('ip', ['link', 'set', b, 'up']);
});

/** Does the file match gnome-boxes' test, ^allow.*virbr0 without the multiline flag (PCRE, as GLib's GRegex)? */
async function boxesSees(file: string): Promise<boolean> {
  return (await execa('grep', ['-qzP', '^allow.*virbr0', file], { reject: false })).exitCode === 0;
}

afterAll(async () => {
  await cleanupAll();
});

describe('BridgeConf with the stock qemu-bridge-helper', () => {
  it('lets the helper use vnet bridges, refuses others, and keeps the admin lines byte for byte', async () => {
    const dir = tempDir();
    const original = Buffer.from('# admin lines\r\ndeny  blocked0\r\n\r\n# caf\xe9 no final newline', 'latin1');
    await writeFile(path.join(dir, 'bridge.conf'), original);

    const before = await runHelper(dir, 'vnbr0');
    expect(before.rc).not.toBe(0);
    expect(before.stderr).toContain('access denied by acl file');

    const conf = new BridgeConf(dir);
    await conf.setBridges(['vnbr0']);
    expect(await conf.read()).toEqual(['vnbr0']);
    const withInclude = await readBytes(path.join(dir, 'bridge.conf'));
    expect(withInclude.toString('latin1')).toBe(`include ${dir}/vnet.conf\r\n${original.toString('latin1')}`);

    const ok = await runHelper(dir, 'vnbr0');
    expect(ok).toMatchObject({ rc: 0, fds: 1, master: 'vnbr0' });
    expect(ok.tap).toMatch(/^tap\d+$/);

    const other = await runHelper(dir, 'other0');
    expect(other.rc).not.toBe(0);
    expect(other.fds).toBe(0);
    expect(other.stderr).toContain('access denied by acl file');

    await conf.setBridges([]);
    expect(await readBytes(path.join(dir, 'bridge.conf'))).toEqual(original);
    await expect(lstat(path.join(dir, 'vnet.conf'))).rejects.toMatchObject({ code: 'ENOENT' });
    const after = await runHelper(dir, 'vnbr0');
    expect(after.stderr).toContain('access denied by acl file');
    expect(after.fds).toBe(0);
  });

  it('creates the folder and bridge.conf when missing: 0755 folder, 0644 root files the helper accepts', async () => {
    const dir = path.join(tempDir(), 'qemu');
    const conf = new BridgeConf(dir);
    await conf.addBridge('vnbr0');
    expect((await stat(dir)).mode & 0o7777).toBe(0o755);
    for (const f of ['bridge.conf', 'vnet.conf']) {
      const st = await stat(path.join(dir, f));
      expect({ f, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid }).toEqual({ f, mode: 0o644, uid: 0, gid: 0 });
    }
    expect(await readFile(path.join(dir, 'bridge.conf'), 'utf8')).toBe(`include ${dir}/vnet.conf\n`);
    expect(await readFile(path.join(dir, 'vnet.conf'), 'utf8')).toBe(renderVnetConf(['vnbr0']));
    expect(await runHelper(dir, 'vnbr0')).toMatchObject({ rc: 0, fds: 1, master: 'vnbr0' });
    // No temp files left behind.
    expect((await readdir(dir)).sort()).toEqual(['.vnet.lock', 'bridge.conf', 'vnet.conf']);
  });

  it('adds and removes single bridges without touching the others', async () => {
    const dir = tempDir();
    const conf = new BridgeConf(dir);
    await conf.addBridge('vnbr0');
    await conf.addBridge('other0');
    await conf.addBridge('vnbr0');
    expect(await conf.read()).toEqual(['other0', 'vnbr0']);
    expect(await runHelper(dir, 'other0')).toMatchObject({ rc: 0, fds: 1, master: 'other0' });
    await conf.removeBridge('other0');
    expect(await conf.read()).toEqual(['vnbr0']);
    expect((await runHelper(dir, 'other0')).stderr).toContain('access denied by acl file');
    expect((await readFile(path.join(dir, 'bridge.conf'), 'utf8')).match(/include/g)).toHaveLength(1);
  });

  it('keeps the mode and owner an admin gave bridge.conf', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'bridge.conf');
    await writeFile(file, 'allow virbr0\n');
    await chmod(file, 0o640);
    await new BridgeConf(dir).setBridges(['vnbr0']);
    expect((await stat(file)).mode & 0o7777).toBe(0o640);
  });

  it('refuses the bridge name "all" and names that would inject lines', async () => {
    const dir = tempDir();
    const conf = new BridgeConf(dir);
    await expect(conf.addBridge('all')).rejects.toThrow(BridgeConfError);
    await expect(conf.setBridges(['vnbr0', 'x\nallow all'])).rejects.toThrow(/"x\\nallow all"/);
    expect(await readdir(dir)).toEqual([]);
  });
});

describe('gnome-boxes: `allow virbr0` on the first line', () => {
  it('is added while virbr0 is open, an admin\'s `deny virbr0` still wins in the real helper, and it goes again byte for byte', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'bridge.conf');
    const admin = Buffer.from('# admin\r\ndeny virbr0\r\n# caf\xe9', 'latin1');
    await writeFile(file, admin);
    expect(await boxesSees(file)).toBe(false);
    const conf = new BridgeConf(dir);
    await conf.setBridges(['virbr0', 'vnbr0']);
    expect(await boxesSees(file)).toBe(true);
    expect((await readBytes(file)).toString('latin1')).toBe(`allow virbr0\r\ninclude ${dir}/vnet.conf\r\n${admin.toString('latin1')}`);
    const denied = await runHelper(dir, 'virbr0');
    expect(denied.fds).toBe(0);
    expect(denied.stderr).toContain('access denied by acl file');
    expect(await runHelper(dir, 'vnbr0')).toMatchObject({ rc: 0, fds: 1, master: 'vnbr0' });
    // virbr0 gets allow lists: vnet's line goes, the rest stays
    await conf.setBridges(['vnbr0']);
    expect((await readBytes(file)).toString('latin1')).toBe(`include ${dir}/vnet.conf\r\n${admin.toString('latin1')}`);
    await conf.setBridges([]);
    expect(await readBytes(file)).toEqual(admin);
  });

  it('without a deny the real helper lets virbr0 through; an admin\'s own first line is never removed', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'bridge.conf');
    await writeFile(file, 'allow virbr0\n# mine\n');
    const conf = new BridgeConf(dir);
    await conf.setBridges(['virbr0']);
    expect(await readFile(file, 'utf8')).toBe(`allow virbr0\ninclude ${dir}/vnet.conf\n# mine\n`);
    expect(await runHelper(dir, 'virbr0')).toMatchObject({ rc: 0, fds: 1, master: 'virbr0' });
    await conf.setBridges([]);
    expect(await readFile(file, 'utf8')).toBe('allow virbr0\n# mine\n');
    expect(await runHelper(dir, 'virbr0')).toMatchObject({ rc: 0, fds: 1, master: 'virbr0' });
  });

  it('vnetd does it for the built-in default, and takes it back when default gets allow-users', async () => {
    const { host } = await hostAndWan();
    const env = vnetEnv();
    const file = path.join(env.VNET_QEMU_CONF_DIR, 'bridge.conf');
    await writeFile(file, '# admin\n');
    const vnetd = await new Vnetd(host, env).start();
    try {
      await waitFor('the first line', () => boxesSees(file));
      expect(await readFile(file, 'utf8')).toBe(`allow virbr0\ninclude ${env.VNET_QEMU_CONF_DIR}/vnet.conf\n# admin\n`);
      await writeFile(path.join(env.VNET_CONFIG_DIR, 'networks', 'default.toml'), 'bridge = "virbr0"\naddress = "192.168.122.1/24"\nallow-users = ["root"]\n');
      await waitFor('the line to go', async () => {
        await vnetd.cli(['status']); // each status syncs bridge.conf with the definitions
        return (await readFile(file, 'utf8')) === '# admin\n';
      });
    } finally {
      await vnetd.stop();
    }
  });
});

describe('symlinks planted in the ACL folder', () => {
  for (const planted of ['bridge.conf', 'vnet.conf', '.vnet.lock']) {
    it(`refuses a symlink at ${planted} and leaves its target unchanged`, async () => {
      const dir = tempDir();
      const victim = path.join(tempDir(), 'victim');
      await writeFile(victim, 'precious\n');
      await symlink(victim, path.join(dir, planted));
      const conf = new BridgeConf(dir);
      const err = await conf.setBridges(['vnbr0']).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BridgeConfError);
      expect((err as Error).message).toContain(path.join(dir, planted));
      expect((err as Error).message).toMatch(/symlink/);
      expect(await readFile(victim, 'utf8')).toBe('precious\n');
      expect((await lstat(path.join(dir, planted))).isSymbolicLink()).toBe(true);
      // Removing refuses too, rather than editing around it.
      await expect(conf.setBridges([])).rejects.toThrow(/symlink/);
      expect(await readFile(victim, 'utf8')).toBe('precious\n');
    });
  }
});

describe('writeFileAtomic', () => {
  it('sets the mode whatever the umask and leaves no temp file', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'f');
    const old = process.umask(0o077);
    try {
      await writeFileAtomic(file, 'one\n', { mode: 0o644 });
      await writeFileAtomic(file, 'two\n', { mode: 0o600, uid: 0, gid: 0 });
    } finally {
      process.umask(old);
    }
    expect(await readFile(file, 'utf8')).toBe('two\n');
    expect((await stat(file)).mode & 0o7777).toBe(0o600);
    expect(await readdir(dir)).toEqual(['f']);
  });

  it('refuses a symlink target, naming it', async () => {
    const dir = tempDir();
    await writeFile(path.join(dir, 'real'), 'x');
    await symlink(path.join(dir, 'real'), path.join(dir, 'link'));
    await expect(writeFileAtomic(path.join(dir, 'link'), 'y', { mode: 0o644 })).rejects.toThrow(`${path.join(dir, 'link')}: is a symlink`);
    expect(await readFile(path.join(dir, 'real'), 'utf8')).toBe('x');
  });

  it('fails naming the file when the folder is missing', async () => {
    const file = path.join(tempDir(), 'no', 'f');
    await expect(writeFileAtomic(file, 'y', { mode: 0o644 })).rejects.toThrow(file);
  });
});

describe('concurrent vnet processes', () => {
  it('never lose each other\'s lines (5 processes x 4 bridges each)', async () => {
    const dir = tempDir();
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'bridge.conf'), '# mine\nallow virbr0\n');
    const mod = path.join(DIST, 'qemu', 'bridge-conf.js');
    const procs = [0, 1, 2, 3, 4].map((i) =>
      execa('node', [
        '--input-type=module',
        '-e',
        `const { BridgeConf } = await import(${JSON.stringify(mod)});
         const c = new BridgeConf(${JSON.stringify(dir)});
         for (let j = 0; j < 4; j++) await c.addBridge('p${i}b' + j);`,
      ]),
    );
    await Promise.all(procs);
    const expected = [0, 1, 2, 3, 4].flatMap((i) => [0, 1, 2, 3].map((j) => `p${i}b${j}`)).sort();
    expect(await new BridgeConf(dir).read()).toEqual(expected);
    expect(await readFile(path.join(dir, 'bridge.conf'), 'utf8')).toBe(`include ${dir}/vnet.conf\n# mine\nallow virbr0\n`);
  });
});
