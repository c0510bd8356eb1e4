/**
 * A view of one parsed XML element that remembers what the importer read from it, so that
 * whatever it did not read (an attribute, a child element) is named in the end rather than
 * dropped without a word. Also the one place that renders untrusted XML text for people:
 * show() escapes everything outside printable ASCII and cuts long values, so a name or value
 * from the XML can never start a new line in a TOML comment or a terminal.
 */
import type { XmlElement } from './xml.js';

export interface NotCarried {
  /** the element as written, e.g. "<bridge stp='on'>" */
  element: string;
  reason: string;
}

/** Untrusted text for a comment or message: printable ASCII as is, the rest escaped; at most `max` characters. */
export function show(text: string, max = 60): string {
  let out = '';
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    out += cp >= 0x20 && cp <= 0x7e && ch !== '\\' ? ch : cp <= 0xffff ? `\\u${cp.toString(16).padStart(4, '0')}` : `\\u{${cp.toString(16)}}`;
    if (out.length > max) return `${out.slice(0, max)}...`;
  }
  return out;
}

export class Node {
  private readonly usedAttrs = new Set<string>();
  private readonly usedChildren = new Set<XmlElement>();
  /** every Node made under this one's root (one per element), so leftovers can be collected */
  private readonly registry: Map<XmlElement, Node>;

  constructor(
    readonly el: XmlElement,
    readonly parent?: Node,
  ) {
    this.registry = parent ? parent.registry : new Map();
    this.registry.set(el, this);
  }

  get name(): string {
    return this.el.name;
  }

  /** An attribute's value (marked as read), or undefined when absent. */
  attr(name: string): string | undefined {
    this.usedAttrs.add(name);
    return this.el.attrs.get(name);
  }

  has(name: string): boolean {
    return this.el.attrs.has(name);
  }

  /** Child elements named `name`, in document order (marked as read). */
  children(name: string): Node[] {
    const out: Node[] = [];
    for (const c of this.el.children) {
      if (c.name !== name) continue;
      this.usedChildren.add(c);
      out.push(this.registry.get(c) ?? new Node(c, this));
    }
    return out;
  }

  /** Mark every attribute and child as read (for an element named as a whole). */
  consumeAll(): void {
    for (const k of this.el.attrs.keys()) this.usedAttrs.add(k);
    for (const c of this.el.children) this.usedChildren.add(c);
  }

  /** The element as a person would recognise it: "<ip family='ipv6' address='fd00::1'>". */
  describe(attrs: string[] = [...this.el.attrs.keys()]): string {
    const parts = attrs.filter((a) => this.el.attrs.has(a)).map((a) => ` ${show(a, 40)}='${show(this.el.attrs.get(a)!, 40)}'`);
    return `<${show(this.el.name, 40)}${parts.join('')}>`;
  }

  /** Where this element is: "<ip address='...'><dhcp><range start='...'>" (the root left out); `without` is left out of the last. */
  where(without?: string): string {
    const chain: Node[] = [];
    for (let n: Node | undefined = this; n; n = n.parent) chain.unshift(n);
    return chain
      .slice(1)
      .map((n) => n.describe(n.keyAttrs().filter((a) => n !== this || a !== without)))
      .join('');
  }

  /** The attributes that identify an element in a message. */
  private keyAttrs(): string[] {
    return ['name', 'family', 'address', 'mode', 'dev', 'mac', 'ip', 'start', 'service', 'addr', 'domain', 'id'];
  }

  /**
   * What nobody read, under the root this Node belongs to: unread attributes of read elements,
   * and unread child elements (named whole). `reason` says why they are not carried.
   */
  leftovers(reason: string): NotCarried[] {
    const out: NotCarried[] = [];
    for (const n of this.registry.values()) {
      const context = n.parent ? n.where() : '<network>';
      for (const [k, v] of n.el.attrs) {
        if (n.usedAttrs.has(k) || k === 'xmlns' || k.startsWith('xmlns:')) continue;
        out.push({ element: `${context} ${show(k, 40)}='${show(v, 40)}'`, reason });
      }
      for (const c of n.el.children) {
        if (n.usedChildren.has(c)) continue;
        out.push({ element: `${n.parent ? context : ''}${new Node(c).describe()}`, reason });
      }
    }
    return out;
  }
}
