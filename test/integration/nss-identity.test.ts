/**
 * Users and groups known only through NSS (as on hosts with LDAP or sssd): Debian's
 * libnss-extrausers, enabled for vnetd alone in a private mount namespace with an edited copy of
 * nsswitch.conf (the machine's own is never touched), with its passwd and group in a temp folder.
 * allow-users, allow-groups and the `vnet` group must all resolve them.
 */
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handoff } from '../support/handoff.js';
import { cleanupAll, hostAndWan, tempDir, type Netns } from '../support/netns.js';
import { Vnetd, vnetEnv } from '../support/vnetd.js';

let host: Netns;
let vnetd: Vnetd;

beforeAll(async () => {
  ({ host } = await hostAndWan());
  const env = vnetEnv();
  const nets = path.join(env.VNET_CONFIG_DIR, 'networks');
  writeFileSync(path.join(nets, 'default.toml'), 'bridge = "virbr0"\naddress = "192.168.122.1/24"\nallow-users = ["ldapuser"]\n');
  writeFileSync(path.join(nets, 'team.toml'), 'bridge = "vnteam0"\naddress = "10.44.0.1/24"\nallow-groups = ["ldapteam"]\n');
  // the directory's view: users and groups no /etc file knows
  const dir = tempDir('vnet-nss-');
  const extra = path.join(dir, 'extrausers');
  mkdirSync(extra);
  writeFileSync(path.join(extra, 'passwd'), 'ldapuser:x:4242:4242::/nonexistent:/usr/sbin/nologin\nldapadmin:x:4245:4245::/nonexistent:/usr/sbin/nologin\n');
  writeFileSync(path.join(extra, 'group'), 'ldapuser:x:4242:\nldapteam:x:4343:ldapuser\nvnet:x:4444:ldapadmin\n');
  const conf = readFileSync('/etc/nsswitch.conf', 'utf8').replace(/^passwd:.*$/m, 'passwd: files extrausers').replace(/^group:.*$/m, 'group: files extrausers');
  writeFileSync(path.join(dir, 'nsswitch.conf'), conf);
  for (const name of ['ldapuser', 'ldapteam']) {
    const r = await host.tryRun('getent', ['passwd', name]);
    expect(r.exitCode, 'the machine itself must not know the directory-only names').not.toBe(0);
  }
  const mounts = `mount --bind ${path.join(dir, 'nsswitch.conf')} /etc/nsswitch.conf && mount --bind ${extra} /var/lib/extrausers && exec "$@"`;
  vnetd = await new Vnetd(host, env, ['unshare', '-m', '--propagation', 'private', '--', 'sh', '-c', mounts, 'sh']).start();
});

afterAll(async () => {
  await vnetd?.stop();
  await cleanupAll();
});

describe('allow lists and the vnet group through NSS', () => {
  it('a user only NSS knows gets a tap on a network that allows them by name; another uid does not', async () => {
    const ok = await handoff('virbr0', { uid: 4242, runtimeDir: vnetd.env.VNET_RUNTIME_DIR });
    expect(ok.result, ok.result.stderr).toMatchObject({ exit: 0, nfds: 1 });
    const no = await handoff('virbr0', { uid: 4244, runtimeDir: vnetd.env.VNET_RUNTIME_DIR });
    expect(no.result.exit).toBe(1);
    expect(no.result.stderr).toMatch(/access denied: network default allows users \[ldapuser\]/);
  });

  it('a member of a group only NSS knows gets a tap on a network that allows the group', async () => {
    const ok = await handoff('vnteam0', { uid: 4250, groups: [4343], runtimeDir: vnetd.env.VNET_RUNTIME_DIR });
    expect(ok.result, ok.result.stderr).toMatchObject({ exit: 0, nfds: 1 });
    const no = await handoff('vnteam0', { uid: 4250, runtimeDir: vnetd.env.VNET_RUNTIME_DIR });
    expect(no.result.exit).toBe(1);
  });

  it('the vnet group, when only NSS knows it, lets its members manage networks', async () => {
    const inner = (groups: string) => ['setpriv', '--reuid=4245', '--regid=4245', groups];
    const run = (groups: string, args: string[]) => host.tryRun(inner(groups)[0]!, [...inner(groups).slice(1), process.execPath, path.resolve(import.meta.dirname, '../../bin/vnet'), ...args], { env: { ...process.env, ...vnetd.env } });
    const refused = await run('--clear-groups', ['up', 'team']);
    expect(refused.exitCode).toBe(3);
    const allowed = await run('--groups=4444', ['up', 'team']);
    expect(allowed.exitCode, allowed.stderr).toBe(0);
    expect((await run('--groups=4444', ['down', 'team'])).exitCode).toBe(0);
  });
});
