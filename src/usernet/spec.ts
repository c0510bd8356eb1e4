/**
 * A user network's record as a NetworkSpec, through the same key parsers as an admin's
 * definition: its bridge, the first address of its subnet, DHCP from the second address to the
 * last but one (with --dhcp), its forward mode, on demand with the default idle-down, and open
 * only to its owner and the users it lists.
 */
import { broadcastOf, offset, parseSubnet } from '../net/ip.js';
import { specFromTable } from '../spec/parse.js';
import type { NetworkSpec } from '../spec/spec.js';
import { qualifiedName } from './names.js';
import type { UserNetworkRecord } from './store.js';

export function userSpec(rec: UserNetworkRecord, source: string): NetworkSpec {
  const subnet = parseSubnet(rec.subnet)!;
  const table: Record<string, unknown> = {
    bridge: rec.bridge,
    address: `${offset(subnet.network, 1)}/${subnet.prefix}`,
    forward: rec.forward,
    'on-demand': true,
  };
  if (rec.dhcp) table['dhcp-range'] = [offset(subnet.network, 2), offset(broadcastOf(subnet)!, -1)];
  if (rec.address6) table.address6 = rec.address6;
  const spec = specFromTable(rec.name, source, table);
  return {
    ...spec,
    name: qualifiedName(rec.user, rec.name),
    owner: { kind: 'user', uid: rec.uid, user: rec.user },
    // never "every local user": an empty list lets in only the owner and root
    access: { allowUsers: rec.allowUsers.map((a) => a.user), allowUids: rec.allowUsers.map((a) => a.uid) },
  };
}
