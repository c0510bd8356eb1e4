/**
 * The system account dnsmasq drops to: `vnet-dnsmasq` (group `vnet-dnsmasq`), used by no
 * other service. Not `nobody`: every process running as nobody could SIGSTOP or SIGKILL a
 * dnsmasq that shares its uid (DHCP and DNS dead while status says up, or the network
 * marked failed). `make deps`, `make test-deps` and `make install` (a sysusers.d entry)
 * create it; vnetd only checks that it is there and says how to make it when it is not.
 */
import { execFile } from 'node:child_process';

/** the account's (and its group's) name */
export const DNSMASQ_ACCOUNT = 'vnet-dnsmasq';

/** VNET_DNSMASQ_USER (tests point it at a missing account) or vnet-dnsmasq */
export function dnsmasqAccount(env: NodeJS.ProcessEnv = process.env): string {
  return env.VNET_DNSMASQ_USER || DNSMASQ_ACCOUNT;
}

const useradd = (args: string) => `useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ${args}`;

/** The command that creates the account (and its group of the same name). */
export function createAccountCommand(name: string): string {
  return useradd(`--user-group ${name}`);
}

export class AccountError extends Error {
  override name = 'AccountError';
}

/** getent through NSS, as dnsmasq's getpwnam()/getgrnam() will see it: true when found. */
function getent(db: 'passwd' | 'group', name: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    execFile('getent', [db, name], { timeout: 10_000, env: { PATH: '/usr/bin:/bin:/usr/sbin:/sbin', LC_ALL: 'C' } }, (err) => {
      if (!err) return resolve(true);
      // getent: exit 2 = no such key
      if ((err as { code?: unknown }).code === 2) return resolve(false);
      reject(new AccountError(`could not look up ${db} entry ${JSON.stringify(name)} with getent: ${err.message}`, { cause: err }));
    });
  });
}

/**
 * Throws AccountError naming the account and the command that creates it when user
 * `user` or group `group` does not exist.
 */
export async function requireAccount(user: string, group: string): Promise<void> {
  const [hasUser, hasGroup] = await Promise.all([getent('passwd', user), getent('group', group)]);
  if (hasUser && hasGroup) return;
  let fix: string;
  if (!hasUser && !hasGroup && user === group) fix = createAccountCommand(user);
  else if (!hasUser && !hasGroup) fix = `groupadd --system ${group} && ${useradd(`--gid ${group} ${user}`)}`;
  else if (!hasUser) fix = useradd(`--gid ${group} ${user}`);
  else fix = `groupadd --system ${group}`;
  const what = !hasUser ? `the system account "${user}"` : `the group "${group}"`;
  throw new AccountError(`${what} that dnsmasq runs as does not exist; create it with: ${fix}`);
}
