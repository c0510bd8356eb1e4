/**
 * Crash injection for the restart tests: with VNET_FAILPOINT=NAME in its environment,
 * vnetd SIGKILLs itself when it reaches the point NAME (e.g. "up:before:add-address",
 * "down:after:apply-ruleset", "tap:prepared"). Unset in production: a string compare.
 */
const armed = process.env.VNET_FAILPOINT;

export function failpoint(name: string): void {
  if (armed !== undefined && armed === name) process.kill(process.pid, 'SIGKILL');
}
