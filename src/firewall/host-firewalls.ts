/**
 * The firewalls beside vnet's own table that vnetd tells to let its networks through: firewalld
 * always (it does nothing where firewalld does not run), Docker's DOCKER-USER chain only with
 * `docker-compat = true` in vnet.toml.
 */
import type { Logger } from 'pino';
import type { VnetSettings } from '../config/vnet-toml.js';
import type { HostFirewall } from '../reconcile/backends.js';
import { DockerUser } from './docker-user.js';
import { Firewalld } from './firewalld.js';

export function hostFirewalls(settings: VnetSettings, log: Logger): HostFirewall[] {
  const list: HostFirewall[] = [new Firewalld({ log: log.child({ component: 'firewalld' }) })];
  if (settings.dockerCompat) list.push(new DockerUser({ log: log.child({ component: 'docker-user' }) }));
  return list;
}

/** Watch every one that can report its reloads; returns the function that stops them all. */
export function watchHostFirewalls(list: ReadonlyArray<Pick<HostFirewall, 'name' | 'watch'>>, changed: (name: string) => void): () => void {
  const stops = list.map((fw) => fw.watch?.(() => changed(fw.name)));
  return () => {
    for (const stop of stops) stop?.();
  };
}
