/** What the host holds now, as the reconciler sees it: kernel, firewall, DHCP servers and vnet's journal. */
import type { DhcpConfig } from '../desired/model.js';
import type { TableState } from '../firewall/table.js';
import type { Link, LinkAddress, Route } from '../netlink/rtnl.js';
import type { LinkDns } from '../hostdns/resolved-api.js';
import type { Journal } from './journal.js';

export interface Observed {
  links: Link[];
  addresses: LinkAddress[];
  routes: Route[];
  /** current values of the sysctls that matter to this diff (missing: no such key, e.g. no link yet) */
  sysctls: Map<string, string>;
  firewall: TableState;
  /** running DHCP/DNS servers by network, with the configuration each runs */
  dhcp: Map<string, DhcpConfig>;
  /** per host firewall (by name), the bridges it lets through */
  hostFirewalls: Map<string, ReadonlySet<string>>;
  /** per bridge in scope, what the host's resolver holds for it (no entry: no such link yet); undefined: no resolver runs */
  hostDns?: Map<string, LinkDns>;
  /** what vnet recorded doing: the bridges it owns, the sysctls it changed */
  journal: Journal;
}
