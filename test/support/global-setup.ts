/**
 * Once per test run: make sure dist/ and the C programs are built (the integration
 * tests run bin/vnetd, bin/vnet, build/vnet-bridge-helper and build/handoff). `make build`
 * is a no-op when everything is up to date, as it is under `make test`.
 *
 * `-o node_modules/.stamp`: never `npm ci` from here, even when package.json or the
 * lockfile is newer than the stamp; that would replace node_modules/ under the running
 * vitest. (`make test` / `make unit` install the dependencies before vitest starts.)
 */
import { execa } from 'execa';
import path from 'node:path';

export default async function setup(): Promise<void> {
  const root = path.resolve(import.meta.dirname, '../..');
  await execa('make', ['-s', '-o', 'node_modules/.stamp', 'build', 'build/handoff'], { cwd: root, stdio: 'inherit' });
}
