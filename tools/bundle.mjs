#!/usr/bin/env node
/**
 * `make build`'s last step: each program (dist/cli/main.js, dist/daemon/main.js) bundled with
 * its dependencies into one CommonJS file, dist/bundle/vnet.cjs and vnetd.cjs, which bin/vnet and
 * bin/vnetd load. Measured on Node 20 (bench/README.md, "Start-up"): Node's ES module loader
 * (resolving, reading and linking some 150 modules) cost vnetd about a third of its start and
 * ~10 MB of RSS, and the CLI half of its overhead over `node -e 0`; a CommonJS bundle skips it.
 * What a program loads lazily (`import()`: the D-Bus API, the importer, definitions for the CLI)
 * stays lazy, as chunks beside it. Native packages stay outside, loaded from node_modules/.
 *
 * The bundles sit two folders below the tree, like dist/cli/main.js, so the path that
 * `vnet up` finds bin/vnetd by (../../bin/vnetd from the module) holds in both.
 */
import { rmSync } from 'node:fs';
import path from 'node:path';
import { build } from 'rolldown';

const root = path.resolve(import.meta.dirname, '..');
const out = path.join(root, 'dist/bundle');
// packages with a compiled .node file, found at run time through their own package folder
const NATIVE = ['koffi', 'netlink', 'usocket'];

rmSync(out, { recursive: true, force: true });
for (const [name, entry] of [
  ['vnet', 'dist/cli/main.js'],
  ['vnetd', 'dist/daemon/main.js'],
]) {
  await build({
    input: { [name]: path.join(root, entry) },
    platform: 'node',
    external: NATIVE,
    logLevel: 'silent',
    // ASCII (a string with one wider character takes two bytes a character in V8's heap), no comments
    output: { dir: out, format: 'cjs', entryFileNames: '[name].cjs', chunkFileNames: `${name}-[name]-[hash].cjs`, sourcemap: false, charset: 'ascii', comments: false },
  });
}
