/**
 * The TOML text of an imported definition, laid out for people: the keys in one fixed order
 * (the order of vnet's README), arrays of tables ([[hosts]], [[dns-records]]) after them,
 * comments on top. Strings are quoted by smol-toml, the parser vnet reads them back with;
 * comment() escapes line breaks and control characters, so nothing from the XML can end a comment early.
 */
import { stringify } from 'smol-toml';

export type TomlValue = string | number | boolean | TomlValue[] | TomlTable;
export interface TomlTable {
  [key: string]: TomlValue;
}

/** Top-level keys in the order they are written; a key not listed here goes last, sorted. */
export const KEY_ORDER = [
  'bridge',
  'address',
  'address6',
  'forward',
  'nat-interface',
  'nat-address',
  'nat-ports',
  'nat6',
  'mtu',
  'dhcp-range',
  'dhcp6-range',
  'dhcp-lease-time',
  'dhcp-lease-max',
  'domain',
  'dns',
  'dns-forwarders',
  'autostart',
  'on-demand',
  'idle-down',
  'standby',
  'allow-users',
  'allow-groups',
];

/** Keys written as arrays of tables ([[name]]), in this order, after every other key. */
export const TABLE_ARRAYS = ['hosts', 'dns-records'];

/** Key order inside tables (hosts, DNS records, forwarders). */
const INNER_ORDER = ['type', 'addr', 'mac', 'name', 'value', 'ip', 'names', 'service', 'protocol', 'domain', 'target', 'port', 'priority', 'weight', 'dhcp-lease-time'];

function ordered(keys: string[], order: string[]): string[] {
  const rank = (k: string) => {
    const i = order.indexOf(k);
    return i < 0 ? order.length : i;
  };
  return [...keys].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
}

function key(k: string): string {
  return /^[A-Za-z0-9_-]+$/.test(k) ? k : quote(k);
}

function quote(s: string): string {
  // smol-toml writes `v = "..."`: its quoting, the same rules its parser reads back
  return stringify({ v: s }).trim().slice(4);
}

function isTable(v: TomlValue): v is TomlTable {
  return typeof v === 'object' && !Array.isArray(v);
}

function inlineTable(t: TomlTable): string {
  const parts = ordered(Object.keys(t), INNER_ORDER).map((k) => `${key(k)} = ${value(t[k]!)}`);
  return parts.length ? `{ ${parts.join(', ')} }` : '{}';
}

function value(v: TomlValue): string {
  if (typeof v === 'string') return quote(v);
  if (typeof v === 'boolean') return String(v);
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw new RangeError(`only integers are written, got ${v}`);
    return String(v);
  }
  if (Array.isArray(v)) {
    // an array of tables inside a key: one per line, so each reads on its own
    if (v.some(isTable)) return `[\n${v.map((x) => `  ${value(x)},\n`).join('')}]`;
    return `[${v.map(value).join(', ')}]`;
  }
  return inlineTable(v);
}

/** A comment line: "# " and the text, with every character that could end a line or that TOML forbids in a comment escaped. */
export function comment(text: string): string {
  const safe = text.replace(/[\u0000-\u0008\u000a-\u001f\u007f\u0085\u2028\u2029\ud800-\udfff]/gu, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return safe === '' ? '#' : `# ${safe}`;
}

/**
 * The definition as TOML: `comments` (one per line) on top, then the keys. Arrays listed in
 * TABLE_ARRAYS become [[name]] tables at the end.
 */
export function emitDefinition(table: TomlTable, comments: string[] = []): string {
  const lines = comments.map(comment);
  const plain = ordered(
    Object.keys(table).filter((k) => !TABLE_ARRAYS.includes(k)),
    KEY_ORDER,
  );
  for (const k of plain) lines.push(`${key(k)} = ${value(table[k]!)}`);
  for (const name of TABLE_ARRAYS) {
    const list = table[name];
    if (!Array.isArray(list)) continue;
    for (const t of list) {
      if (!isTable(t)) throw new TypeError(`${name}: expected tables`);
      lines.push('', `[[${key(name)}]]`);
      for (const k of ordered(Object.keys(t), INNER_ORDER)) lines.push(`${key(k)} = ${value(t[k]!)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}
