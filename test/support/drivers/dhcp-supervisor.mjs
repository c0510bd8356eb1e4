// Runs a DnsmasqSupervisor (from dist/) inside whatever network namespace it is started in.
// Usage: node dhcp-supervisor.mjs SPEC.json
//   SPEC: { name, confPath, config, leaseFile?, backoff?, bench?: N }
// Prints one JSON object a line on stdout: {event:"serving",pid,startupMs}, {event:"restarted",pid},
// {event:"exit",pid,code,signal}, {event:"failed",reason}, {event:"error",message}, {event:"bench",ms:[...],total:[...]} (spawn->serving, and all of start() with the --test run),
// {event:"stopped"}. SIGTERM stops dnsmasq and exits 0.
import { readFileSync } from 'node:fs';
import { pino } from 'pino';

const { DnsmasqSupervisor } = await import(new URL('../../../dist/dhcp/supervisor.js', import.meta.url).href);

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const logger = pino({ level: 'info' }, pino.destination(2));

const sup = new DnsmasqSupervisor({ ...spec, logger });
sup.on('restarted', (pid) => say({ event: 'restarted', pid }));
sup.on('exit', (e) => say({ event: 'exit', ...e }));
sup.on('failed', (reason) => say({ event: 'failed', reason }));

process.on('SIGTERM', async () => {
  await sup.stop();
  say({ event: 'stopped' });
  process.exit(0);
});

try {
  if (spec.bench) {
    const ms = [];
    const total = [];
    for (let i = 0; i < spec.bench; i += 1) {
      const t0 = performance.now();
      await sup.start();
      total.push(performance.now() - t0);
      ms.push(sup.lastStartupMs);
      await sup.stop();
    }
    say({ event: 'bench', ms, total });
    process.exit(0);
  }
  await sup.start();
  say({ event: 'serving', pid: sup.pid, startupMs: sup.lastStartupMs });
} catch (err) {
  say({ event: 'error', message: err.message, name: err.name });
  process.exit(1);
}
