/**
 * vnet's D-Bus interfaces as data, and the introspection XML made from it. The same
 * tables drive dispatch in bus.ts, so what `busctl introspect` shows is what answers.
 */
import dbus from 'dbus-next';
import type { NetworkStatus } from '../daemon/service.js';
import { BINDINGS } from './methods.js';
import { MANAGER_IFACE, NETWORK_IFACE } from './names.js';

export interface Arg {
  name: string;
  type: string;
}

export interface MethodSpec {
  name: string;
  in: Arg[];
  out: Arg[];
}

export interface SignalSpec {
  name: string;
  args: Arg[];
}

export interface PropertySpec {
  name: string;
  type: string;
  /**
   * org.freedesktop.DBus.Property.EmitsChangedSignal: "true" when every change is
   * announced with PropertiesChanged, "const" when it never changes, "false" when it
   * may change unannounced (it follows the definition file, or DHCP traffic).
   */
  emits: 'true' | 'false' | 'const';
}

export interface InterfaceSpec {
  name: string;
  methods: MethodSpec[];
  signals: SignalSpec[];
  properties: PropertySpec[];
}

const s = (name: string): Arg => ({ name, type: 's' });
const o = (name: string): Arg => ({ name, type: 'o' });
const u = (name: string): Arg => ({ name, type: 'u' });

export const MANAGER: InterfaceSpec = {
  name: MANAGER_IFACE,
  methods: BINDINGS.map((m) => ({ name: m.name, in: m.in, out: m.out })),
  signals: [
    { name: 'NetworkStateChanged', args: [s('network'), s('state'), s('reason')] },
    { name: 'TapAdded', args: [s('network'), s('tap'), u('uid'), u('pid')] },
    { name: 'TapRemoved', args: [s('network'), s('tap'), u('uid'), u('pid')] },
    { name: 'LeaseAdded', args: [s('network'), s('mac'), s('ip'), s('hostname')] },
    { name: 'LeaseExpired', args: [s('network'), s('mac'), s('ip')] },
    // a route or address of another interface overlaps an up network's subnet; "" "" when it cleared
    { name: 'SubnetConflict', args: [s('network'), s('subnet'), s('interface')] },
  ],
  properties: [],
};

export const NETWORK: InterfaceSpec = {
  name: NETWORK_IFACE,
  methods: [],
  signals: [],
  properties: [
    { name: 'Name', type: 's', emits: 'const' },
    { name: 'Bridge', type: 's', emits: 'false' },
    { name: 'State', type: 's', emits: 'true' },
    { name: 'Reason', type: 's', emits: 'true' },
    { name: 'Subnet', type: 's', emits: 'false' },
    { name: 'Address', type: 's', emits: 'false' },
    { name: 'Forward', type: 's', emits: 'false' },
    { name: 'OnDemand', type: 'b', emits: 'false' },
    { name: 'Pinned', type: 'b', emits: 'false' },
    { name: 'Leases', type: 'u', emits: 'false' },
    { name: 'Taps', type: 'u', emits: 'true' },
    { name: 'Source', type: 's', emits: 'false' },
  ],
};

/** The standard interfaces every object answers (handled in bus.ts and by dbus-next). */
const STANDARD: InterfaceSpec[] = [
  {
    name: 'org.freedesktop.DBus.Peer',
    methods: [
      { name: 'Ping', in: [], out: [] },
      { name: 'GetMachineId', in: [], out: [s('machine_uuid')] },
    ],
    signals: [],
    properties: [],
  },
  {
    name: 'org.freedesktop.DBus.Introspectable',
    methods: [{ name: 'Introspect', in: [], out: [s('xml_data')] }],
    signals: [],
    properties: [],
  },
  {
    name: 'org.freedesktop.DBus.Properties',
    methods: [
      { name: 'Get', in: [s('interface_name'), s('property_name')], out: [{ name: 'value', type: 'v' }] },
      { name: 'GetAll', in: [s('interface_name')], out: [{ name: 'props', type: 'a{sv}' }] },
      { name: 'Set', in: [s('interface_name'), s('property_name'), { name: 'value', type: 'v' }], out: [] },
    ],
    signals: [
      {
        name: 'PropertiesChanged',
        args: [s('interface_name'), { name: 'changed_properties', type: 'a{sv}' }, { name: 'invalidated_properties', type: 'as' }],
      },
    ],
    properties: [],
  },
];

function attr(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function interfaceXml(spec: InterfaceSpec): string[] {
  const lines = [` <interface name="${attr(spec.name)}">`];
  for (const m of spec.methods) {
    lines.push(`  <method name="${attr(m.name)}">`);
    for (const a of m.in) lines.push(`   <arg name="${attr(a.name)}" type="${attr(a.type)}" direction="in"/>`);
    for (const a of m.out) lines.push(`   <arg name="${attr(a.name)}" type="${attr(a.type)}" direction="out"/>`);
    lines.push('  </method>');
  }
  for (const sig of spec.signals) {
    lines.push(`  <signal name="${attr(sig.name)}">`);
    for (const a of sig.args) lines.push(`   <arg name="${attr(a.name)}" type="${attr(a.type)}"/>`);
    lines.push('  </signal>');
  }
  for (const p of spec.properties) {
    lines.push(`  <property name="${attr(p.name)}" type="${attr(p.type)}" access="read">`);
    lines.push(
      `   <annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="${p.emits}"/>`,
    );
    lines.push('  </property>');
  }
  lines.push(' </interface>');
  return lines;
}

/** Introspection XML for one object: its interfaces (plus the standard ones) and child nodes. */
export function introspectXml(interfaces: InterfaceSpec[], children: string[]): string {
  const lines = [
    '<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"',
    ' "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">',
    '<node>',
  ];
  for (const spec of interfaces.length ? [...STANDARD, ...interfaces] : STANDARD) lines.push(...interfaceXml(spec));
  for (const child of children) lines.push(` <node name="${attr(child)}"/>`);
  lines.push('</node>');
  return lines.join('\n') + '\n';
}

/** Values of the Network interface's properties, by property name. */
export type NetworkProps = Record<string, string | number | boolean>;

export function networkProps(s: NetworkStatus): NetworkProps {
  return {
    Name: s.name,
    Bridge: s.bridge,
    State: s.state,
    Reason: s.reason ?? '',
    Subnet: s.subnet,
    Address: s.address,
    Forward: s.forward,
    OnDemand: s.onDemand,
    Pinned: s.pinned,
    Leases: s.leases,
    Taps: s.taps.length,
    Source: s.source,
  };
}

/** Property values as the a{sv} of GetAll and PropertiesChanged. */
export function propertyVariants(props: NetworkProps): Record<string, InstanceType<typeof dbus.Variant>> {
  const out: Record<string, InstanceType<typeof dbus.Variant>> = {};
  for (const p of NETWORK.properties) if (p.name in props) out[p.name] = new dbus.Variant(p.type, props[p.name]);
  return out;
}

export function signatureOf(args: Arg[]): string {
  return args.map((a) => a.type).join('');
}
