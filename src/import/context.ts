/**
 * What the libvirt importer builds while it walks one network: the vnet table, the list of
 * what it cannot carry, and small checks of values it reads from the XML.
 */
import { canonical, isAddress } from '../net/ip.js';
import { Node, show, type NotCarried } from './node.js';
import type { TomlTable } from './toml.js';

/** The whole network cannot be imported: its name, bridge or kind has no vnet equivalent. */
export class ImportRefused extends Error {
  override name = 'ImportRefused';
  constructor(
    readonly origin: string,
    readonly network: string | undefined,
    readonly reason: string,
  ) {
    super(`${origin}: ${network === undefined ? 'network' : `network "${show(network)}"`} not imported: ${reason}`);
  }
}

export class Context {
  readonly table: TomlTable = {};
  readonly notCarried: NotCarried[] = [];

  constructor(
    readonly origin: string,
    public network?: string,
  ) {}

  refuse(reason: string): never {
    throw new ImportRefused(this.origin, this.network, reason);
  }

  /** Name `node` (the whole element, marked read) as not carried. */
  skip(node: Node, reason: string, attrs?: string[]): void {
    node.consumeAll();
    this.notCarried.push({ element: node.where() || node.describe(attrs), reason });
  }

  /** Name one attribute of `node` as not carried. */
  skipAttr(node: Node, attr: string, reason: string): void {
    const v = node.attr(attr);
    if (v === undefined) return;
    this.notCarried.push({ element: `${node.where(attr) || '<network>'} ${attr}='${show(v, 40)}'`, reason });
  }
}

/** A strict unsigned decimal integer in [min, max], or undefined. */
export function uint(text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined || !/^[0-9]{1,10}$/.test(text)) return undefined;
  const n = Number(text);
  return n >= min && n <= max ? n : undefined;
}

/** A MAC address in any case, written lower case; undefined when malformed. */
export function mac(text: string | undefined): string | undefined {
  return text !== undefined && /^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/.test(text) ? text.toLowerCase() : undefined;
}

/** An address of `family` in canonical form ("fd00:0::1" → "fd00::1"), or undefined. */
export function address(text: string | undefined, family: 4 | 6): string | undefined {
  return text !== undefined && isAddress(text, family) ? canonical(text) : undefined;
}

/** `<lease expiry='N' unit='...'/>` → seconds (0: infinite, as libvirt), or a problem. */
export function leaseSeconds(lease: Node): number | string {
  const unit = lease.attr('unit') ?? 'minutes';
  const mult = ({ seconds: 1, minutes: 60, hours: 3600 } as Record<string, number>)[unit];
  if (mult === undefined) return `unit "${show(unit)}" is not seconds, minutes or hours`;
  const n = uint(lease.attr('expiry'), 0, 4294967295);
  if (n === undefined) return 'expiry is not a whole number';
  const s = n * mult;
  if (s > 4294967295) return `${n} ${unit} is longer than 2^32-1 seconds`;
  // libvirt's own floor: 2 minutes, except 0 (infinite)
  if (s !== 0 && s < 120) return 'a lease shorter than 2 minutes (libvirt refuses it too)';
  return s;
}
