import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadVnetToml, parseVnetToml } from '../../src/config/vnet-toml.js';
import { cleanupAll, tempDir } from '../support/netns.js';

const F = '/etc/vnet/vnet.toml';

afterAll(cleanupAll);

describe('vnet.toml', () => {
  it('reads docker-compat, and every setting has its default when the file is absent or empty', () => {
    expect(parseVnetToml(F, 'docker-compat = true\n')).toEqual({ dockerCompat: true });
    expect(parseVnetToml(F, 'docker-compat = false\n')).toEqual({ dockerCompat: false });
    expect(parseVnetToml(F, '# nothing set\n')).toEqual({ dockerCompat: false });
    expect(loadVnetToml(tempDir('vnet-toml-none-'))).toEqual({ dockerCompat: false });
  });

  it('an unknown key, a bad value or bad TOML is an error naming the file, the key and the value', () => {
    expect(() => parseVnetToml(F, 'docker-compatible = true\n')).toThrow('/etc/vnet/vnet.toml: key `docker-compatible`: unknown key; known keys are docker-compat');
    expect(() => parseVnetToml(F, 'docker-compat = "yes"\n')).toThrow('/etc/vnet/vnet.toml: key `docker-compat` = "yes": expected true or false');
    // a key of a network definition is no setting of vnet's
    expect(() => parseVnetToml(F, 'bridge = "virbr0"\n')).toThrow(/key `bridge`: unknown key/);
    expect(() => parseVnetToml(F, '[docker-compat]\n')).toThrow(/key `docker-compat` = \{\}: expected true or false/);
    expect(() => parseVnetToml(F, 'docker-compat = \n')).toThrow(/^\/etc\/vnet\/vnet\.toml: not valid TOML/);
  });

  it('loads the file of the config folder, and names it when it cannot be read', () => {
    const dir = tempDir('vnet-toml-');
    writeFileSync(path.join(dir, 'vnet.toml'), 'docker-compat = true\n');
    expect(loadVnetToml(dir)).toEqual({ dockerCompat: true });
    const odd = tempDir('vnet-toml-dir-');
    mkdirSync(path.join(odd, 'vnet.toml'));
    expect(() => loadVnetToml(odd)).toThrow(`${path.join(odd, 'vnet.toml')}: cannot be read`);
  });
});
