/** The sysctls vnet changes, all in the daemon's own network namespace. */
import { readFile, writeFile } from 'node:fs/promises';

const IP_FORWARD = '/proc/sys/net/ipv4/ip_forward';

export async function ipv4ForwardingEnabled(): Promise<boolean> {
  return (await readFile(IP_FORWARD, 'utf8')).trim() === '1';
}

export async function setIpv4Forwarding(enabled: boolean): Promise<void> {
  await writeFile(IP_FORWARD, enabled ? '1\n' : '0\n');
}

/** Turn IPv6 off on one interface (its name arrives validated: no "/" or ".."). */
export async function disableIpv6(ifname: string): Promise<void> {
  await writeFile(`/proc/sys/net/ipv6/conf/${ifname}/disable_ipv6`, '1\n');
}
