// Prints "ready", then one JSON line per link event, until stdin closes.
import { watchLinks } from '../../../dist/netlink/events.js';

const w = watchLinks((e) => process.stdout.write(JSON.stringify(e) + '\n'), {
  onError: (err) => process.stdout.write(JSON.stringify({ error: err.message }) + '\n'),
});
process.stdin.on('data', () => undefined);
process.stdin.on('end', () => w.close());
process.stdout.write('ready\n');
