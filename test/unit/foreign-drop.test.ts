import { describe, expect, it } from 'vitest';
import { forwardDrops } from '../../src/firewall/foreign-drop.js';

const chain = (family: string, table: string, name: string, more: object = {}) => ({ chain: { family, table, name, handle: 1, ...more } });
const base = (policy: string) => ({ type: 'filter', hook: 'forward', prio: 0, policy });

describe('forward chains of other tables that drop', () => {
  it("finds Docker's and ufw's drop policies, names the owner by the chains beside it, and never counts vnet's table or accept policies", () => {
    const listing = {
      nftables: [
        { metainfo: { version: '1.0.6' } },
        chain('ip', 'filter', 'FORWARD', base('drop')),
        chain('ip', 'filter', 'DOCKER-USER'),
        chain('ip', 'filter', 'DOCKER-FORWARD'),
        chain('ip6', 'filter', 'FORWARD', base('drop')),
        chain('ip6', 'filter', 'ufw6-user-forward'),
        chain('inet', 'vnet', 'forward', base('drop')),
        chain('inet', 'firewalld', 'filter_FORWARD', base('accept')),
        chain('inet', 'mine', 'fw', base('drop')),
        chain('inet', 'mine', 'input', { type: 'filter', hook: 'input', prio: 0, policy: 'drop' }),
      ],
    };
    expect(forwardDrops(listing)).toEqual({
      drops: [
        { family: 'ip', table: 'filter', chain: 'FORWARD', owner: 'docker' },
        { family: 'ip6', table: 'filter', chain: 'FORWARD', owner: 'ufw' },
        { family: 'inet', table: 'mine', chain: 'fw', owner: 'unknown' },
      ],
      dockerUser: true,
    });
    expect(forwardDrops({ nftables: [] })).toEqual({ drops: [], dockerUser: false });
    expect(forwardDrops('garbage')).toEqual({ drops: [], dockerUser: false });
  });
});
