import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSettings, parseSettings } from '../../src/config/vnet-toml.js';
import { cleanupAll, tempDir } from '../support/netns.js';

const F = '/etc/vnet/vnet.toml';

afterAll(cleanupAll);

describe('vnet.toml', () => {
  it('reads docker-compat, and every setting has its default when the file is absent or empty', () => {
    expect(parseSettings(F, 'docker-compat = true\n')).toMatchObject({ dockerCompat: true });
    expect(parseSettings(F, 'docker-compat = false\n')).toMatchObject({ dockerCompat: false });
    expect(parseSettings(F, '# nothing set\n')).toMatchObject({ dockerCompat: false });
    expect(loadSettings(tempDir('vnet-toml-none-'))).toMatchObject({ dockerCompat: false });
  });

  it('an unknown key, a bad value or bad TOML is an error naming the file, the key and the value', () => {
    expect(() => parseSettings(F, 'docker-compatible = true\n')).toThrow('/etc/vnet/vnet.toml: key `docker-compatible`: unknown key; known keys are auto-pool, docker-compat');
    expect(() => parseSettings(F, 'docker-compat = "yes"\n')).toThrow('/etc/vnet/vnet.toml: key `docker-compat` = "yes": expected true or false');
    // a key of a network definition is no setting of vnet's
    expect(() => parseSettings(F, 'bridge = "virbr0"\n')).toThrow(/key `bridge`: unknown key/);
    expect(() => parseSettings(F, '[docker-compat]\n')).toThrow(/key `docker-compat` = \{\}: expected true or false/);
    expect(() => parseSettings(F, 'docker-compat = \n')).toThrow(/^\/etc\/vnet\/vnet\.toml: not valid TOML/);
  });

  it('loads the file of the config folder, and names it when it cannot be read', () => {
    const dir = tempDir('vnet-toml-');
    writeFileSync(path.join(dir, 'vnet.toml'), 'docker-compat = true\n');
    expect(loadSettings(dir)).toMatchObject({ dockerCompat: true });
    const odd = tempDir('vnet-toml-dir-');
    mkdirSync(path.join(odd, 'vnet.toml'));
    expect(() => loadSettings(odd)).toThrow(`${path.join(odd, 'vnet.toml')}: cannot be read`);
  });
});
