/**
 * Fault injection for the crash and rollback tests. With VNET_FAILPOINT=NAME in its
 * environment vnetd SIGKILLs itself when it reaches the point NAME (e.g.
 * "up:before:add-address", "down:after:apply-ruleset", "tap:prepared"); with
 * VNET_FAILPOINT=throw@NAME the step fails there with an error instead. Unset in
 * production: one string compare per step.
 */
const armed = process.env.VNET_FAILPOINT;

export function failpoint(name: string): void {
  if (armed === undefined) return;
  if (armed === name) process.kill(process.pid, 'SIGKILL');
  if (armed === `throw@${name}`) throw new Error(`injected failure at ${name}`);
}
