/**
 * Fault injection for the crash and rollback tests. With VNET_FAILPOINT=NAME in its
 * environment vnetd SIGKILLs itself when it reaches the point NAME (e.g.
 * "up:before:add-address", "down:after:firewall", "tap:prepared"; a step with a subject also answers
 * to "KIND@SUBJECT", such as "up:after:set-sysctl@net/ipv4/ip_forward"); with
 * VNET_FAILPOINT=throw@NAME the step fails there with an error instead. Unset in
 * production: one string compare per step.
 */
const armed = process.env.VNET_FAILPOINT;

export function failpoint(...names: string[]): void {
  if (armed === undefined) return;
  for (const name of names) {
    if (armed === name) process.kill(process.pid, 'SIGKILL');
    if (armed === `throw@${name}`) throw new Error(`injected failure at ${name}`);
  }
}
