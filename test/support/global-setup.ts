/**
 * Once per test run: make sure dist/ and the C programs are built (the integration
 * tests run bin/vnetd, bin/vnet and build/vnet-bridge-helper). `make build` is a no-op
 * when everything is up to date, as it is under `make test`.
 */
import { execa } from 'execa';
import path from 'node:path';

export default async function setup(): Promise<void> {
  const root = path.resolve(import.meta.dirname, '../..');
  await execa('make', ['-s', 'build'], { cwd: root, stdio: 'inherit' });
}
