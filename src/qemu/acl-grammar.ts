/**
 * The grammar of QEMU's bridge ACL (bridge.conf), as qemu-bridge-helper reads it: `#` comments,
 * `allow NAME|all`, `deny NAME|all`, `include PATH`. One tokenizer for the reader (acl.ts) and the
 * writer (bridge-conf.ts), so both split a line the same way. vnet decides the cases QEMU leaves
 * to chance, always towards deny:
 *  - a line longer than 4095 bytes (QEMU's fgets buffer would split it into several lines), a NUL
 *    byte anywhere, an unknown keyword, a keyword with no argument, an argument containing blanks
 *    (`allow br0 # note`), or a name of 16 bytes or more makes the file malformed;
 *  - blanks are spaces and tabs between keyword and argument; spaces, tabs, CR, VT and FF are
 *    trimmed at both ends, so CRLF files read like LF files; keywords are lower case only;
 *  - `include` of a relative path is relative to the including file's folder (never the caller's cwd).
 */
import path from 'node:path';
import { IFNAMSIZ } from '../config/names.js';

export const MAX_LINE_BYTES = 4095;

export type AclRule =
  | { kind: 'allow' | 'deny'; /** a bridge name, or "all" */ name: string; line: number }
  | { kind: 'include'; /** absolute, resolved against the including file's folder */ path: string; line: number };

export interface AclFile {
  file: string;
  rules: AclRule[];
  /** set when the file is malformed: "line N: what is wrong" (the rules are then not used) */
  problem?: string;
}

const TRIM = /^[ \t\r\v\f]+|[ \t\r\v\f]+$/g;
const LEADING = /^[ \t\r\v\f]+/;

function bytes(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/**
 * One line (without its '\n'), split as qemu-bridge-helper splits it: skip leading blanks, split
 * at the first space (only when there is none, at the first tab), then trim the argument. So
 * `allow\tbr0 ` has the verb `allow\tbr0`. Undefined for a blank or comment line.
 */
export function splitLine(raw: string): { verb: string; arg: string } | { problem: string } | undefined {
  const line = raw.replace(LEADING, '');
  if (line === '' || line.startsWith('#')) return undefined;
  let gap = line.indexOf(' ');
  if (gap < 0) gap = line.indexOf('\t');
  if (gap < 0) return { problem: `\`${line.replace(TRIM, '').slice(0, 64)}\` has no argument` };
  return { verb: line.slice(0, gap), arg: line.slice(gap + 1).replace(TRIM, '') };
}

/** Parse one bridge.conf text. Pure; never throws: a malformed file comes back with `problem`. */
export function parseAcl(text: string, file: string): AclFile {
  const rules: AclRule[] = [];
  const bad = (line: number, what: string): AclFile => ({ file, rules: [], problem: `line ${line}: ${what}` });
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] ?? '';
    const n = i + 1;
    if (bytes(raw) > MAX_LINE_BYTES) return bad(n, `longer than ${MAX_LINE_BYTES} bytes`);
    if (raw.includes('\0')) return bad(n, 'contains a NUL byte');
    const split = splitLine(raw);
    if (split === undefined) continue;
    if ('problem' in split) return bad(n, split.problem);
    const { verb, arg } = split;
    if (verb !== 'allow' && verb !== 'deny' && verb !== 'include') return bad(n, `unknown keyword \`${verb.slice(0, 64)}\``);
    if (arg === '') return bad(n, `\`${verb}\` has no argument`);
    if (/[ \t\r\v\f]/.test(arg)) return bad(n, `\`${verb}\` takes one argument, got \`${arg.slice(0, 64)}\``);
    if (verb === 'include') {
      rules.push({ kind: 'include', path: path.resolve(path.dirname(file), arg), line: n });
    } else {
      if (bytes(arg) >= IFNAMSIZ) return bad(n, `name \`${arg.slice(0, 64)}\` is ${bytes(arg)} bytes; names must be under ${IFNAMSIZ}`);
      rules.push({ kind: verb, name: arg, line: n });
    }
  }
  return { file, rules };
}

/** Why a bridge name cannot be looked up at all, or undefined when it can. */
export function badBridgeName(bridge: string): string | undefined {
  if (bridge === '') return 'empty bridge name';
  if (bridge.includes('\0')) return 'bridge name contains a NUL byte';
  if (bytes(bridge) >= IFNAMSIZ) return `bridge name \`${bridge.slice(0, 64)}\` is ${bytes(bridge)} bytes; names must be under ${IFNAMSIZ}`;
  return undefined;
}
