/**
 * libvirt network XML (a parsed tree, see xml.ts) → an imported network: the vnet definition
 * as a TOML table, and every element or attribute it cannot carry, each with the reason.
 * Follows libvirt's documented network format (formatnetwork). A network whose name or
 * bridge vnet refuses, or whose kind is not a bridge network at all (macvtap, SR-IOV, Open
 * vSwitch), is refused whole (ImportRefused) rather than renamed or half imported.
 */
import { ifnameProblem, networkNameProblem } from '../config/names.js';
import { address, Context, ImportRefused, uint } from './context.js';
import { importDns } from './libvirt-dns.js';
import { importIps, importNat6 } from './libvirt-ip.js';
import { Node, show, type NotCarried } from './node.js';
import type { TomlTable } from './toml.js';
import type { XmlElement } from './xml.js';

export { ImportRefused };

export interface ImportedNetwork {
  /** libvirt's <name>, which is also the vnet network name (NAME.toml) */
  name: string;
  /** where the XML came from: a file, or "qemu:///system" */
  origin: string;
  table: TomlTable;
  notCarried: NotCarried[];
}

const DNSMASQ_NS = 'http://libvirt.org/schemas/network/dnsmasq/1.0';

/** Forward modes whose guests use host NICs directly (macvtap, SR-IOV): no bridge vnet could serve. */
const DIRECT_MODES = new Set(['private', 'vepa', 'passthrough', 'hostdev']);

/** vnet masquerades to these source ports unless `nat-ports` says otherwise */
const VNET_NAT_PORTS = '1024-65535';

const NOT_UNDERSTOOD = 'not part of the libvirt network format vnet import-libvirt knows';

/** The outgoing interface of a nat or route network: <forward dev> or its single <interface dev>. */
function forwardDev(fwd: Node, ctx: Context): void {
  const dev = fwd.attr('dev');
  const ifaces = fwd.children('interface');
  const devs = ifaces.map((i) => i.attr('dev'));
  const name = dev ?? devs[0];
  for (const [i, iface] of ifaces.entries()) {
    // libvirt's live XML repeats dev as <interface dev='...'/>
    if (i === 0 && (dev === undefined || devs[0] === dev)) continue;
    ctx.skip(iface, 'vnet restricts forwarding to one interface (`nat-interface`)');
  }
  if (name === undefined) return;
  const p = ifnameProblem(name);
  if (p) ctx.notCarried.push({ element: fwd.describe(['mode', 'dev']), reason: `interface name ${p}` });
  else ctx.table['nat-interface'] = name;
}

/** <nat><address start end/><port start end/></nat> → nat-address, nat-ports. */
function importNat(nat: Node, ctx: Context): void {
  const addrs = nat.children('address');
  for (const [i, a] of addrs.entries()) {
    if (i > 0) {
      ctx.skip(a, 'vnet takes one source address range (`nat-address`)');
      continue;
    }
    const start = address(a.attr('start'), 4);
    const end = address(a.attr('end'), 4);
    if (!start || !end) ctx.skip(a, 'start and end must be IPv4 addresses');
    else ctx.table['nat-address'] = `${start}-${end}`;
  }
  const ports = nat.children('port');
  for (const [i, p] of ports.entries()) {
    if (i > 0) {
      ctx.skip(p, 'vnet takes one source port range (`nat-ports`)');
      continue;
    }
    const start = uint(p.attr('start'), 1, 65535);
    const end = uint(p.attr('end'), 1, 65535);
    if (start === undefined || end === undefined || start > end) ctx.skip(p, 'start and end must be ports 1..65535, start not after end');
    else if (`${start}-${end}` !== VNET_NAT_PORTS) ctx.table['nat-ports'] = `${start}-${end}`;
  }
}

/** <forward> → forward (and nat-*); returns the mode, and the <nat> element for later. */
function importForward(net: Node, ctx: Context): { mode: string; nat?: Node } {
  const fwds = net.children('forward');
  for (const extra of fwds.slice(1)) ctx.skip(extra, 'a second <forward>: libvirt reads one');
  const fwd = fwds[0];
  if (!fwd) {
    ctx.table.forward = 'isolated';
    return { mode: 'isolated' };
  }
  // <forward/> without a mode is NAT (Debian's shipped default.xml says just that)
  const mode = fwd.attr('mode') ?? 'nat';
  if (DIRECT_MODES.has(mode))
    ctx.refuse(`<forward mode='${show(mode)}'> connects guests to host NICs directly (macvtap or SR-IOV), not through a bridge that vnet could serve`);
  for (const pf of fwd.children('pf')) ctx.skip(pf, 'an SR-IOV physical function: not a bridge network');
  for (const a of fwd.children('address')) ctx.skip(a, 'a PCI device for SR-IOV: not a bridge network');
  for (const d of fwd.children('driver')) ctx.skip(d, 'a device assignment driver: not a bridge network');
  ctx.skipAttr(fwd, 'managed', 'device assignment (hostdev) only');
  let nat: Node | undefined;
  switch (mode) {
    case 'nat':
    case 'route': {
      ctx.table.forward = mode;
      forwardDev(fwd, ctx);
      const nats = fwd.children('nat');
      for (const extra of nats.slice(1)) ctx.skip(extra, 'a second <nat>: libvirt reads one');
      nat = nats[0];
      if (nat && mode === 'route') {
        ctx.skip(nat, 'a routed network does no NAT (libvirt ignores it too)');
        nat = undefined;
      } else if (nat) importNat(nat, ctx);
      break;
    }
    case 'open':
      ctx.table.forward = 'open';
      // libvirt refuses dev with open: it is enforced by the firewall rules open mode leaves out
      ctx.skipAttr(fwd, 'dev', 'an open network has no firewall rules to restrict forwarding with');
      for (const nat of fwd.children('nat')) ctx.skip(nat, 'an open network does no NAT');
      break;
    case 'bridge': {
      if (fwd.children('interface').length)
        ctx.refuse("<forward mode='bridge'> with <interface> elements is macvtap's bridge mode: guests attach to host NICs directly, not to a bridge vnet could serve");
      const vp = net.children('virtualport');
      if (vp.some((v) => v.attr('type') === 'openvswitch')) ctx.refuse('an Open vSwitch bridge: vnet puts taps on Linux bridges only');
      ctx.table.forward = 'bridge';
      ctx.skipAttr(fwd, 'dev', 'an existing bridge forwards through its own ports');
      for (const nat of fwd.children('nat')) ctx.skip(nat, 'an existing bridge does no NAT');
      break;
    }
    default:
      ctx.refuse(`unknown forward mode "${show(mode)}"`);
  }
  return { mode, ...(nat ? { nat } : {}) };
}

/** <bridge name stp delay macTableManager zone> → bridge. */
function importBridge(net: Node, mode: string, ctx: Context): void {
  const bridges = net.children('bridge');
  for (const extra of bridges.slice(1)) ctx.skip(extra, 'a second <bridge>: libvirt reads one');
  const br = bridges[0];
  const name = br?.attr('name');
  if (name === undefined)
    ctx.refuse('no <bridge name=...>: libvirt names the bridge when it defines the network; import the XML it wrote (virsh net-dumpxml, or its networks folder)');
  const p = ifnameProblem(name) ?? (name === 'all' ? 'means every bridge in bridge.conf' : undefined);
  if (p) ctx.refuse(`bridge name "${show(name)}" ${p}`);
  ctx.table.bridge = name;
  if (mode === 'bridge') {
    for (const a of ['stp', 'delay', 'macTableManager']) ctx.skipAttr(br!, a, 'libvirt leaves an existing bridge as it is, and so does vnet');
  } else {
    const stp = br!.attr('stp');
    if (stp !== 'off')
      ctx.notCarried.push({ element: stp === undefined ? "<bridge> (no stp='off')" : `<bridge stp='${show(stp)}'>`, reason: "libvirt turns STP on; vnet's bridges run without the spanning tree protocol (a bridge of taps has no loops)" });
    const delay = br!.attr('delay');
    if (delay !== undefined && delay !== '0') ctx.notCarried.push({ element: `<bridge delay='${show(delay)}'>`, reason: "vnet's bridges forward at once (no forward delay)" });
    const mtm = br!.attr('macTableManager');
    if (mtm !== undefined && mtm !== 'kernel') ctx.notCarried.push({ element: `<bridge macTableManager='${show(mtm)}'>`, reason: 'the kernel learns MAC addresses on vnet\'s bridges' });
  }
  ctx.skipAttr(br!, 'zone', "vnet does not put bridges in firewalld zones; its own firewalld integration handles them");
}

/** <name> → the network name, which must be a vnet network name as it is. */
function networkName(net: Node, ctx: Context): string {
  const names = net.children('name');
  if (names.length !== 1) ctx.refuse(names.length ? 'more than one <name>' : 'no <name>');
  const name = names[0]!.el.text;
  ctx.network = name;
  const p = networkNameProblem(name);
  if (p) ctx.refuse(`the name "${show(name)}" is not a vnet network name: it ${p} (vnet does not rename networks)`);
  return name;
}

/** Parse one libvirt <network> into an imported vnet definition, or throw ImportRefused. */
export function importNetwork(root: XmlElement, origin: string, opts: { autostart?: boolean } = {}): ImportedNetwork {
  const ctx = new Context(origin);
  if (root.name !== 'network') ctx.refuse(`not a libvirt network: the root element is <${show(root.name)}>, not <network>`);
  const net = new Node(root);
  const name = networkName(net, ctx);
  net.attr('connections'); // live-only: how many guests are attached right now
  net.children('uuid'); // libvirt's identity of the network; vnet names networks by file
  for (const n of [...net.children('title'), ...net.children('description')]) ctx.skip(n, 'vnet definitions keep no description (write a TOML comment)');
  for (const n of net.children('metadata')) ctx.skip(n, "other applications' data");

  const { mode, nat } = importForward(net, ctx);
  importBridge(net, mode, ctx);

  const mtus = net.children('mtu');
  for (const m of mtus) {
    const size = uint(m.attr('size'), 68, 65535);
    if (size === undefined || ctx.table.mtu !== undefined) ctx.skip(m, size === undefined ? 'size is not 68..65535' : 'a second <mtu>');
    else ctx.table.mtu = size;
  }
  for (const d of net.children('domain')) {
    const dn = d.attr('name');
    if (dn === undefined || ctx.table.domain !== undefined) {
      ctx.skip(d, dn === undefined ? 'has no name' : 'a second <domain>');
      continue;
    }
    ctx.table.domain = dn;
    // vnet's dnsmasq answers names in the domain itself (local=/DOMAIN/), which is localOnly='yes'
    if (d.attr('localOnly') !== 'yes')
      ctx.notCarried.push({ element: `<domain name='${show(dn)}'>`, reason: 'vnet answers names in the domain from its own DHCP names only (localOnly=\'yes\'); libvirt forwarded the unknown ones upstream' });
    // vnet registers every network's domain with systemd-resolved where it runs (hostdns/): 'yes' is carried
    if (d.attr('register') !== 'yes') ctx.skipAttr(d, 'register', "vnet registers every network's domain with systemd-resolved where it runs");
  }
  for (const m of net.children('mac')) ctx.skip(m, "vnet gives the bridge a fixed MAC address of its own (derived from the bridge name)");

  const ips = importIps(net, ctx, mode !== 'bridge');
  if (nat) importNat6(nat, ips, ctx);
  const ipv6 = net.attr('ipv6');
  if (ipv6 === 'yes' && !ips.v6.length)
    ctx.notCarried.push({ element: "<network ipv6='yes'>", reason: 'vnet turns IPv6 off on a bridge without an IPv6 address (give it one with `address6`)' });
  importDns(net, ctx);

  for (const r of net.children('route')) ctx.skip(r, 'vnet adds no static routes (add them in the host\'s network configuration)');
  for (const b of net.children('bandwidth')) ctx.skip(b, 'vnet does not shape traffic');
  for (const v of net.children('vlan')) ctx.skip(v, "VLAN tags need Open vSwitch or SR-IOV; vnet's Linux bridges carry untagged traffic");
  for (const v of net.children('virtualport')) ctx.skip(v, "port profiles are for Open vSwitch and 802.1Qbh switches; vnet's bridges are Linux bridges");
  for (const pg of net.children('portgroup')) ctx.skip(pg, 'portgroups give guests per-port settings in libvirt domain XML; vnet has none');
  for (const p of net.children('port')) ctx.skip(p, 'vnet does not isolate guests on one bridge from one another');
  ctx.skipAttr(net, 'trustGuestRxFilters', 'a setting of macvtap guest interfaces');

  // <dnsmasq:options>, under whatever prefix the file binds libvirt's dnsmasq namespace to
  for (const [k, v] of root.attrs) {
    if (!k.startsWith('xmlns:') || v !== DNSMASQ_NS) continue;
    for (const o of net.children(`${k.slice(6)}:options`)) ctx.skip(o, 'raw dnsmasq options: vnet writes its own dnsmasq configuration and takes none');
  }
  if (opts.autostart) ctx.table.autostart = true;
  ctx.notCarried.push(...net.leftovers(NOT_UNDERSTOOD));
  return { name, origin, table: ctx.table, notCarried: ctx.notCarried };
}
