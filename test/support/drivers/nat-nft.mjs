// Runs vnet's Nft applier (built into dist/) in whatever network namespace it is started in:
//   ip netns exec NS node nat-nft.mjs apply        < transaction.json
//   ip netns exec NS node nat-nft.mjs bench COUNT  < transaction.json   (prints apply times in ms)
//   ip netns exec NS node nat-nft.mjs list | has
// Prints JSON on stdout; on failure prints "ErrorName: message" on stderr and exits 1.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const { Nft } = await import(pathToFileURL(path.join(root, 'dist/firewall/nft.js')).href);

const [cmd, arg] = process.argv.slice(2);
const nft = new Nft();
try {
  let out;
  if (cmd === 'apply') {
    await nft.apply(JSON.parse(readFileSync(0, 'utf8')));
    out = { ok: true };
  } else if (cmd === 'bench') {
    const cmds = JSON.parse(readFileSync(0, 'utf8'));
    const times = [];
    for (let i = 0; i < Number(arg); i++) {
      const t0 = process.hrtime.bigint();
      await nft.apply(cmds);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    out = { times };
  } else if (cmd === 'list') {
    const t = await nft.list();
    out = { table: t.exists ? { chains: [...t.chains], maps: [...t.maps].map(([name, m]) => [name, m.def, [...m.elems]]) } : null };
  } else if (cmd === 'has') {
    out = { has: await nft.hasTable() };
  } else {
    throw new Error(`unknown command ${JSON.stringify(cmd)} (apply, bench N, list, has)`);
  }
  process.stdout.write(JSON.stringify(out));
} catch (e) {
  process.stderr.write(`${e.name}: ${e.message}\n`);
  process.exit(1);
}
