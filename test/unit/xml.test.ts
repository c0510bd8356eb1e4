/**
 * The strict XML parser libvirt network XML goes through: what it accepts, what it refuses
 * (each refusal naming file, line, column and what is wrong), its bounds, and fuzzing: any
 * input ends in a tree or an XmlError, never another exception, a hang or a deep recursion.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, parseXml, XmlError, type XmlElement } from '../../src/import/xml.js';

function problem(text: string | Uint8Array, limits = DEFAULT_LIMITS): string {
  try {
    parseXml(text, 'f.xml', limits);
  } catch (err) {
    expect(err).toBeInstanceOf(XmlError);
    return (err as Error).message;
  }
  throw new Error('parsed, expected an XmlError');
}

describe('what it reads', () => {
  it('elements, attributes in both quotes, text, comments, declaration, BOM', () => {
    const root = parseXml(
      '\ufeff<?xml version="1.0" encoding="UTF-8"?>\n<!-- head -->\n<network a="1" b=\'2\'>\n  <name>x</name><!-- in -->\n  <e/>\n</network>\n<!-- tail -->\n',
      'f.xml',
    );
    expect(root.name).toBe('network');
    expect([...root.attrs]).toEqual([
      ['a', '1'],
      ['b', '2'],
    ]);
    expect(root.children.map((c) => [c.name, c.text, c.line])).toEqual([
      ['name', 'x', 4],
      ['e', '', 5],
    ]);
  });

  it('the five entities and numeric references, in text and attributes; whitespace in attribute values becomes spaces', () => {
    const root = parseXml('<t v="&lt;&gt;&amp;&quot;&apos;&#65;&#x42;&#x1F600;&#10;\ta\nb">&lt;x&gt; &#233;</t>', 'f.xml');
    expect(root.attrs.get('v')).toBe(`<>&"'AB\u{1F600}\n a b`);
    expect(root.text).toBe('<x> é');
  });

  it('namespaced names as written', () => {
    const root = parseXml("<network xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'><dnsmasq:options/></network>", 'f.xml');
    expect(root.children[0]!.name).toBe('dnsmasq:options');
  });
});

describe('what it refuses, naming file, line and column', () => {
  const cases: Array<[string, string, string]> = [
    ['a DOCTYPE', '<?xml version="1.0"?>\n<!DOCTYPE network [<!ENTITY a "aaaa">]>\n<network/>', 'f.xml:2:1: DOCTYPE declarations are refused'],
    ['an ENTITY declaration', '<!ENTITY x "y"><network/>', 'f.xml:1:1: ENTITY declarations are refused'],
    ['an unknown entity', '<network>\n  <name>&lol;</name>\n</network>', 'f.xml:2:9: unknown entity "&lol;"'],
    ['a reference to NUL', '<n>&#0;</n>', 'f.xml:1:4: character reference to U+0000 (0) is not allowed in XML'],
    ['a reference past Unicode', '<n>&#x110000;</n>', 'is not allowed in XML'],
    ['a surrogate reference', '<n>&#xD800;</n>', 'is not allowed in XML'],
    ['a raw control character', '<n>a\u0001</n>', 'f.xml:1:5: character U+0001 is not allowed in XML'],
    ['a mismatched end tag', '<network>\n<name>x</nam>\n</network>', 'f.xml:2:8: </nam> closes <name> (line 2)'],
    ['an unclosed element', '<network>\n<name>x</name>\n', 'f.xml:3:1: element <network> (line 1) is not closed'],
    ['a duplicate attribute', '<n a="1" a="2"/>', 'f.xml:1:10: attribute "a" appears twice in <n>'],
    ['an unquoted attribute', '<n a=1/>', 'expected a quoted value, found "1"'],
    ['"<" in an attribute', '<n a="<"/>', '"<" is not allowed in an attribute value'],
    ['two roots', '<a/><b/>', 'a second root element'],
    ['text after the root', '<a/>x', 'unexpected "x" after the root element'],
    ['no root', '<!-- only -->', 'no root element'],
    ['a processing instruction', '<a><?php x ?></a>', 'processing instructions are refused'],
    ['a late declaration', ' <?xml version="1.0"?><a/>', 'may only stand at the very start'],
    ['another encoding', '<?xml version="1.0" encoding="ISO-8859-1"?><a/>', 'encoding "ISO-8859-1" is not accepted'],
    ['CDATA', '<a><![CDATA[x]]></a>', 'CDATA sections are not accepted'],
    ['"--" in a comment', '<a><!-- a -- b --></a>', '"--" is not allowed inside a comment'],
    ['"]]>" in text', '<a>]]></a>', '"]]>" is not allowed in text'],
    ['attributes without space', '<a x="1"y="2"/>', 'expected whitespace, ">" or "/>" in <a>'],
  ];
  for (const [what, text, msg] of cases) it(what, () => expect(problem(text)).toContain(msg));

  it('bytes that are not UTF-8', () => {
    expect(problem(Buffer.from([0x3c, 0x61, 0x3e, 0xff, 0x3c, 0x2f, 0x61, 0x3e]))).toBe('f.xml:1:1: not valid UTF-8');
  });
});

describe('bounds', () => {
  const small = { ...DEFAULT_LIMITS, maxBytes: 1000, maxDepth: 4, maxElements: 5, maxAttributes: 3, maxNameLength: 10 };
  it('size', () => expect(problem('<a>' + 'x'.repeat(1000) + '</a>', small)).toBe('f.xml:1:1: file is 1007 bytes; at most 1000 are read'));
  it('the default size is 1 MiB', () => expect(problem(`<a>${'x'.repeat(1024 * 1024)}</a>`)).toContain('at most 1048576 are read'));
  it('depth', () => expect(problem('<a><b><c><d><e/></d></c></b></a>', small)).toBe('f.xml:1:13: elements nest deeper than 4 levels'));
  it('element count', () => expect(problem('<a><b/><b/><b/><b/><b/></a>', small)).toContain('more than 5 elements'));
  it('attribute count', () => expect(problem('<a p="1" q="2" r="3" s="4"/>', small)).toContain('<a> has more than 3 attributes'));
  it('name length', () => expect(problem('<abcdefghijklmnop/>', small)).toContain('longer than 10 characters'));

  it('100,000 nested elements end in a depth error, not a stack overflow', () => {
    expect(problem('<a>'.repeat(100_000))).toContain('nest deeper than 32 levels');
  });

  it('a billion laughs cannot start: no entity can be declared', () => {
    const lol = '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>\n<lolz>&lol2;</lolz>';
    expect(problem(lol)).toContain('f.xml:2:1: DOCTYPE declarations are refused');
  });
});

describe('fuzz', () => {
  function serialize(e: XmlElement): string {
    const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;').replace(/[\t\n\r]/g, (c) => `&#${c.charCodeAt(0)};`);
    const attrs = [...e.attrs].map(([k, v]) => ` ${k}="${esc(v)}"`).join('');
    return `<${e.name}${attrs}>${esc(e.text)}${e.children.map(serialize).join('')}</${e.name}>`;
  }

  it('any string: a tree or an XmlError, nothing else', () => {
    const pieces = fc.constantFrom('<', '>', '/', '=', '"', "'", '&', ';', '#', 'x', 'a', ' ', '\n', '!--', '-->', '<?xml version="1.0"?>', '&amp;', '&#65;', '<a>', '</a>', '<b x="1"/>', ']]>', '<!DOCTYPE', '\u0000', '\ud800', 'é');
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), fc.array(pieces, { maxLength: 60 }).map((a) => a.join(''))), (s) => {
        try {
          parseXml(s, 'f.xml');
        } catch (err) {
          if (!(err instanceof XmlError)) throw err;
          expect(err.message).toMatch(/^f\.xml:\d+:\d+: /);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('any bytes: a tree or an XmlError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        try {
          parseXml(b, 'f.xml');
        } catch (err) {
          if (!(err instanceof XmlError)) throw err;
        }
      }),
      { numRuns: 500 },
    );
  });

  it('a tree written out with escapes reads back as the same tree (names, attributes, text)', () => {
    const name = fc.stringMatching(/^[a-z][a-z0-9]{0,6}$/);
    const text = fc.string({ maxLength: 12 }).filter((s) => [...s].every((c) => /[\t\n\r\u0020-\ud7ff\ue000-\ufffd]/u.test(c)));
    const leaf = fc.record({ name, attrs: fc.dictionary(name, text, { maxKeys: 3 }), text, children: fc.constant([]) });
    const tree = fc.record({ name, attrs: fc.dictionary(name, text, { maxKeys: 3 }), text, children: fc.array(leaf, { maxLength: 4 }) });
    fc.assert(
      fc.property(tree, (t) => {
        const el: XmlElement = { ...t, attrs: new Map(Object.entries(t.attrs)), children: t.children.map((c) => ({ ...c, attrs: new Map(Object.entries(c.attrs)), children: [], line: 0 })), line: 0 };
        const back = parseXml(serialize(el), 'f.xml');
        const strip = (e: XmlElement): unknown => ({ name: e.name, attrs: [...e.attrs], text: e.text, children: e.children.map(strip) });
        expect(strip(back)).toEqual(strip(el));
      }),
      { numRuns: 500 },
    );
  });
});
