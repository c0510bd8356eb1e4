/**
 * A small, strict XML parser for libvirt's network XML, which arrives from elsewhere (a file,
 * another daemon) and is parsed as untrusted input. It reads the subset libvirt writes:
 * an optional XML declaration, one root element, elements, attributes, text, comments and
 * the five predefined entities plus numeric character references. Everything else is refused
 * with the file, line and column: DOCTYPE and ENTITY declarations (no entity expansion, no
 * external references), processing instructions, CDATA sections, unknown entities, characters
 * XML 1.0 forbids. Input is bounded (size, depth, element and attribute counts), and every
 * step is linear in the input: no backtracking, no recursion.
 */

export interface XmlElement {
  /** qualified name as written ("network", "dnsmasq:options") */
  name: string;
  /** attributes in document order, values with entities decoded */
  attrs: Map<string, string>;
  children: XmlElement[];
  /** the element's own text (its text pieces joined, children's text not included) */
  text: string;
  line: number;
}

export interface XmlLimits {
  maxBytes: number;
  maxDepth: number;
  maxElements: number;
  maxAttributes: number;
  /** longest element or attribute name */
  maxNameLength: number;
}

export const DEFAULT_LIMITS: XmlLimits = {
  maxBytes: 1024 * 1024,
  maxDepth: 32,
  maxElements: 10_000,
  maxAttributes: 32,
  maxNameLength: 128,
};

export class XmlError extends Error {
  override name = 'XmlError';
  constructor(
    readonly file: string,
    readonly line: number,
    readonly column: number,
    readonly problem: string,
  ) {
    super(`${file}:${line}:${column}: ${problem}`);
  }
}

const NAME_START = /[A-Za-z_:]/;
const NAME_CHAR = /[A-Za-z0-9_.:-]/;
const PREDEFINED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/** Is `cp` a character XML 1.0 allows in a document? */
function xmlChar(cp: number): boolean {
  return cp === 0x9 || cp === 0xa || cp === 0xd || (cp >= 0x20 && cp <= 0xd7ff) || (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff);
}

/** A character for an error message: printable ASCII as is, anything else as U+XXXX. */
function showChar(c: string | undefined): string {
  if (c === undefined) return 'the end of the file';
  const cp = c.codePointAt(0)!;
  return cp >= 0x21 && cp <= 0x7e ? `"${c}"` : `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
}

/**
 * Parse `input` (bytes, which must be UTF-8, or text) into its root element, or throw
 * XmlError naming `file`, the line and column, and what is wrong.
 */
export function parseXml(input: Uint8Array | string, file: string, limits: XmlLimits = DEFAULT_LIMITS): XmlElement {
  const size = typeof input === 'string' ? Buffer.byteLength(input, 'utf8') : input.length;
  if (size > limits.maxBytes) throw new XmlError(file, 1, 1, `file is ${size} bytes; at most ${limits.maxBytes} are read`);
  let text: string;
  if (typeof input === 'string') text = input;
  else {
    try {
      text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(input);
    } catch {
      throw new XmlError(file, 1, 1, 'not valid UTF-8');
    }
  }
  return new Parser(text, file, limits).document();
}

class Parser {
  private pos = 0;
  private line = 1;
  /** index just after the last newline: the column is pos - lineStart + 1 */
  private lineStart = 0;
  private elements = 0;

  constructor(
    private readonly s: string,
    private readonly file: string,
    private readonly limits: XmlLimits,
  ) {}

  private fail(problem: string, at = this.pos): never {
    // the line and column of `at` (at <= pos, on the current line or before it)
    let line = this.line;
    let start = this.lineStart;
    if (at < start) {
      line = 1;
      start = 0;
      for (let i = 0; i < at; i++) if (this.s.charCodeAt(i) === 0x0a) (line += 1), (start = i + 1);
    }
    throw new XmlError(this.file, line, at - start + 1, problem);
  }

  private peek(offset = 0): string | undefined {
    return this.s[this.pos + offset];
  }

  private startsWith(lit: string): boolean {
    return this.s.startsWith(lit, this.pos);
  }

  /** Advance one character (a whole code point), checking it is allowed in XML. */
  private next(): string {
    const cp = this.s.codePointAt(this.pos);
    if (cp === undefined) this.fail('unexpected end of file');
    if (!xmlChar(cp)) this.fail(`character ${showChar(String.fromCodePoint(cp))} is not allowed in XML`);
    const c = String.fromCodePoint(cp);
    this.pos += c.length;
    if (cp === 0x0a) {
      this.line += 1;
      this.lineStart = this.pos;
    }
    return c;
  }

  private expect(lit: string, what: string): void {
    if (!this.startsWith(lit)) this.fail(`expected ${what}, found ${showChar(this.peek())}`);
    for (let i = 0; i < lit.length; i++) this.next();
  }

  private skipSpace(): boolean {
    const from = this.pos;
    for (let c = this.peek(); c === ' ' || c === '\t' || c === '\n' || c === '\r'; c = this.peek()) this.next();
    return this.pos > from;
  }

  private name(what: string): string {
    const from = this.pos;
    if (!NAME_START.test(this.peek() ?? '')) this.fail(`expected ${what}, found ${showChar(this.peek())}`);
    this.next();
    while (NAME_CHAR.test(this.peek() ?? '')) {
      this.next();
      if (this.pos - from > this.limits.maxNameLength) this.fail(`${what} is longer than ${this.limits.maxNameLength} characters`, from);
    }
    return this.s.slice(from, this.pos);
  }

  /** After "&": a predefined entity or a character reference, up to and including ";". */
  private reference(): string {
    const at = this.pos - 1;
    if (this.peek() === '#') {
      this.next();
      const hex = this.peek() === 'x';
      if (hex) this.next();
      const from = this.pos;
      const digit = hex ? /[0-9A-Fa-f]/ : /[0-9]/;
      while (digit.test(this.peek() ?? '') && this.pos - from < 8) this.next();
      const digits = this.s.slice(from, this.pos);
      if (!digits || this.peek() !== ';') this.fail('malformed character reference (expected &#DIGITS; or &#xHEX;)', at);
      this.next();
      const cp = parseInt(digits, hex ? 16 : 10);
      if (!xmlChar(cp)) this.fail(`character reference to ${showChar(cp <= 0x10ffff ? String.fromCodePoint(cp) : '?')} (${digits}) is not allowed in XML`, at);
      return String.fromCodePoint(cp);
    }
    const from = this.pos;
    while (/[A-Za-z]/.test(this.peek() ?? '') && this.pos - from < 8) this.next();
    const name = this.s.slice(from, this.pos);
    if (this.peek() !== ';' || !Object.hasOwn(PREDEFINED, name))
      this.fail(`unknown entity "&${name}${this.peek() === ';' ? ';' : ''}": only &lt; &gt; &amp; &quot; &apos; and numeric references are accepted`, at);
    this.next();
    return PREDEFINED[name]!;
  }

  /** A comment, after "<!--". "--" may not occur inside (XML 1.0). */
  private comment(): void {
    const at = this.pos - 4;
    for (;;) {
      if (this.pos >= this.s.length) this.fail('comment is not closed (missing "-->")', at);
      if (this.startsWith('--')) {
        if (this.s[this.pos + 2] !== '>') this.fail('"--" is not allowed inside a comment');
        this.next(), this.next(), this.next();
        return;
      }
      this.next();
    }
  }

  /** Markup that may stand outside the root element and between elements: comments; refuse the rest by name. */
  private misc(): boolean {
    if (this.startsWith('<!--')) {
      for (let i = 0; i < 4; i++) this.next();
      this.comment();
      return true;
    }
    if (this.startsWith('<!DOCTYPE')) this.fail('DOCTYPE declarations are refused (no DTDs, no entity definitions)');
    if (this.startsWith('<!ENTITY')) this.fail('ENTITY declarations are refused');
    if (this.startsWith('<![CDATA[')) this.fail('CDATA sections are not accepted (libvirt does not write them)');
    if (this.startsWith('<!')) this.fail('markup declarations ("<!...") are refused');
    if (this.startsWith('<?')) {
      if (/^<\?xml[ \t\r\n?]/i.test(this.s.slice(this.pos, this.pos + 6))) this.fail('the XML declaration may only stand at the very start of the file');
      this.fail('processing instructions are refused');
    }
    return false;
  }

  /** `<?xml version="1.0" encoding="UTF-8"?>`: version 1.x, encoding UTF-8 (any case) if given. */
  private declaration(): void {
    this.expect('<?xml', '"<?xml"');
    const seen = new Set<string>();
    for (;;) {
      const spaced = this.skipSpace();
      if (this.startsWith('?>')) {
        this.next(), this.next();
        break;
      }
      if (!spaced) this.fail('expected whitespace or "?>" in the XML declaration');
      const at = this.pos;
      const key = this.name('a pseudo-attribute of the XML declaration');
      if (!['version', 'encoding', 'standalone'].includes(key) || seen.has(key)) this.fail(`unexpected "${key}" in the XML declaration`, at);
      seen.add(key);
      this.skipSpace();
      this.expect('=', '"="');
      this.skipSpace();
      const value = this.quoted(false);
      if (key === 'version' && !/^1\.[0-9]+$/.test(value)) this.fail(`XML version ${JSON.stringify(value)} is not 1.x`, at);
      if (key === 'encoding' && !/^utf-?8$/i.test(value)) this.fail(`encoding ${JSON.stringify(value)} is not accepted; the file must be UTF-8`, at);
      if (key === 'standalone' && value !== 'yes' && value !== 'no') this.fail('standalone must be "yes" or "no"', at);
    }
    if (!seen.has('version')) this.fail('the XML declaration has no version');
  }

  /** A quoted attribute value; entities decoded, whitespace characters normalised to spaces (XML 1.0 3.3.3). */
  private quoted(entities = true): string {
    const q = this.peek();
    if (q !== '"' && q !== "'") this.fail(`expected a quoted value, found ${showChar(q)}`);
    const at = this.pos;
    this.next();
    let out = '';
    for (;;) {
      const c = this.peek();
      if (c === undefined) this.fail('attribute value is not closed', at);
      if (c === q) {
        this.next();
        return out;
      }
      if (c === '<') this.fail('"<" is not allowed in an attribute value');
      if (c === '&' && entities) {
        this.next();
        out += this.reference();
        continue;
      }
      const ch = this.next();
      out += ch === '\t' || ch === '\n' || ch === '\r' ? ' ' : ch;
    }
  }

  document(): XmlElement {
    if (this.peek() === '\ufeff') this.pos += 1; // a byte order mark, before anything else
    if (/^<\?xml[ \t\r\n?]/.test(this.s.slice(this.pos, this.pos + 6))) this.declaration();
    for (;;) {
      this.skipSpace();
      if (!this.misc()) break;
    }
    if (this.peek() !== '<') this.fail(this.pos >= this.s.length ? 'no root element' : `expected the root element, found ${showChar(this.peek())}`);
    const root = this.element();
    for (;;) {
      this.skipSpace();
      if (this.pos >= this.s.length) return root;
      if (!this.misc()) this.fail(this.peek() === '<' ? 'a second root element: a document has exactly one' : `unexpected ${showChar(this.peek())} after the root element`);
    }
  }

  /** One element and everything inside it, iteratively (no recursion: depth is bounded, not the stack). */
  private element(): XmlElement {
    const stack: XmlElement[] = [];
    let root: XmlElement | undefined;
    for (;;) {
      // here: at "<" of a start tag
      const open = this.startTag();
      const parent = stack[stack.length - 1];
      if (parent) parent.children.push(open.el);
      else root = open.el;
      if (stack.length + 1 > this.limits.maxDepth) this.fail(`elements nest deeper than ${this.limits.maxDepth} levels`, open.at);
      if (!open.selfClosing) stack.push(open.el);
      // content until the next start tag, or until the stack is empty
      for (;;) {
        const top = stack[stack.length - 1];
        if (!top) return root!;
        const c = this.peek();
        if (c === undefined) this.fail(`element <${top.name}> (line ${top.line}) is not closed`);
        if (c === '<') {
          if (this.startsWith('</')) {
            this.endTag(top);
            stack.pop();
            continue;
          }
          if (this.misc()) continue;
          break; // a child's start tag
        }
        if (c === '&') {
          this.next();
          top.text += this.reference();
          continue;
        }
        if (c === ']' && this.startsWith(']]>')) this.fail('"]]>" is not allowed in text');
        top.text += this.textRun();
      }
    }
  }

  /** Plain text up to the next "<", "&" or "]" (at least one character), checked as next() would. */
  private textRun(): string {
    const from = this.pos;
    this.next();
    for (;;) {
      const c = this.s.charCodeAt(this.pos);
      if (Number.isNaN(c) || c === 0x3c || c === 0x26 || c === 0x5d) break;
      if (c === 0x0a) {
        this.pos += 1;
        this.line += 1;
        this.lineStart = this.pos;
      } else if ((c >= 0x20 && c < 0xd800) || c === 0x09 || c === 0x0d || (c >= 0xe000 && c <= 0xfffd)) this.pos += 1;
      else this.next(); // surrogate pairs, and the characters next() refuses
    }
    return this.s.slice(from, this.pos);
  }

  private startTag(): { el: XmlElement; selfClosing: boolean; at: number } {
    const at = this.pos;
    const line = this.line;
    this.next(); // "<"
    const name = this.name('an element name');
    if (++this.elements > this.limits.maxElements) this.fail(`more than ${this.limits.maxElements} elements`, at);
    const attrs = new Map<string, string>();
    for (;;) {
      const spaced = this.skipSpace();
      if (this.startsWith('/>')) {
        this.next(), this.next();
        return { el: { name, attrs, children: [], text: '', line }, selfClosing: true, at };
      }
      if (this.peek() === '>') {
        this.next();
        return { el: { name, attrs, children: [], text: '', line }, selfClosing: false, at };
      }
      if (!spaced) this.fail(`expected whitespace, ">" or "/>" in <${name}>, found ${showChar(this.peek())}`);
      const attrAt = this.pos;
      const key = this.name('an attribute name');
      if (attrs.has(key)) this.fail(`attribute "${key}" appears twice in <${name}>`, attrAt);
      if (attrs.size >= this.limits.maxAttributes) this.fail(`<${name}> has more than ${this.limits.maxAttributes} attributes`, attrAt);
      this.skipSpace();
      this.expect('=', `"=" after attribute "${key}"`);
      this.skipSpace();
      attrs.set(key, this.quoted());
    }
  }

  private endTag(open: XmlElement): void {
    const at = this.pos;
    this.next(), this.next(); // "</"
    const name = this.name('an element name');
    if (name !== open.name) this.fail(`</${name}> closes <${open.name}> (line ${open.line})`, at);
    this.skipSpace();
    this.expect('>', `">" to end </${name}>`);
  }
}
