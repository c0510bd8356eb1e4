/**
 * Docker's iptables chains, made in a test namespace the way Docker 28 makes them (through
 * `iptables`, which is iptables-nft here as on Docker's hosts): a new daemon with its default
 * bridge docker0 (172.17.0.1/16), IPv4 forwarding it turned on itself (so FORWARD's policy is
 * DROP), and one container, 172.17.0.2, with TCP port 80 published. No dockerd runs.
 */
import { createNetns, veth, type Netns } from './netns.js';

export const CONTAINER = '172.17.0.2';
export const PUBLISHED_PORT = 80;

/** `iptables ARGS` lines, in the order Docker's listing (`iptables -S`) shows them. */
const FILTER = [
  '-N DOCKER',
  '-N DOCKER-BRIDGE',
  '-N DOCKER-CT',
  '-N DOCKER-FORWARD',
  '-N DOCKER-ISOLATION-STAGE-1',
  '-N DOCKER-ISOLATION-STAGE-2',
  '-N DOCKER-USER',
  '-A FORWARD -j DOCKER-USER',
  '-A FORWARD -j DOCKER-FORWARD',
  `-A DOCKER -d ${CONTAINER}/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport ${PUBLISHED_PORT} -j ACCEPT`,
  '-A DOCKER ! -i docker0 -o docker0 -j DROP',
  '-A DOCKER-BRIDGE -o docker0 -j DOCKER',
  '-A DOCKER-CT -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
  '-A DOCKER-FORWARD -j DOCKER-CT',
  '-A DOCKER-FORWARD -j DOCKER-ISOLATION-STAGE-1',
  '-A DOCKER-FORWARD -j DOCKER-BRIDGE',
  '-A DOCKER-FORWARD -i docker0 -j ACCEPT',
  '-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2',
  '-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP',
  '-P FORWARD DROP',
];

const NAT = [
  '-N DOCKER',
  '-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER',
  '-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER',
  '-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE',
  '-A DOCKER -i docker0 -j RETURN',
];

/** Docker's bridge, chains and container in `host`; returns the container's namespace. */
export async function dockerOn(host: Netns): Promise<Netns> {
  await host.run('ip', ['link', 'add', 'docker0', 'type', 'bridge']);
  await host.run('ip', ['addr', 'add', '172.17.0.1/16', 'dev', 'docker0']);
  await host.run('ip', ['link', 'set', 'docker0', 'up']);
  await host.run('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  for (const line of FILTER) await host.run('iptables', ['-t', 'filter', ...line.split(' ')]);
  for (const line of NAT) await host.run('iptables', ['-t', 'nat', ...line.split(' ')]);
  const ct = await createNetns('vct');
  await veth(host, 'vethct', ct, 'eth0');
  await host.run('ip', ['link', 'set', 'vethct', 'master', 'docker0']);
  await ct.run('ip', ['addr', 'add', `${CONTAINER}/16`, 'dev', 'eth0']);
  await ct.run('ip', ['route', 'add', 'default', 'via', '172.17.0.1']);
  return ct;
}
