/**
 * Who may have a tap on which bridge by QEMU's bridge ACL, evaluated as the caller would see it:
 * default deny; a matching deny beats any allow whatever the order; exact names; includes recurse.
 *  - an include that cannot be read (missing, or not readable by the caller) adds nothing, as in QEMU;
 *    a file already read is not read again (cycles end); an include chain deeper than 16 files or a
 *    tree of more than 256 files is malformed; one malformed file anywhere denies everything;
 *  - the top file missing or unreadable denies with "failed to parse default acl file".
 * The decision says `allowed` (granted) and `denied` (a deny matched or a file is malformed), so a vnet
 * network's own bridge can honour bridge.conf denies without needing a bridge.conf allow.
 */
import { badBridgeName, parseAcl } from './acl-grammar.js';

export { parseAcl } from './acl-grammar.js';

export const DEFAULT_ACL_FILE = '/etc/qemu/bridge.conf';
export const MAX_INCLUDE_DEPTH = 16;
export const MAX_ACL_FILES = 256;

export interface AclDecision {
  /** bridge.conf grants the bridge: some allow matches and nothing denies */
  allowed: boolean;
  /**
   * bridge.conf actively refuses: a deny matches, or a file is malformed. False when the file is
   * merely missing, unreadable or silent, so a vnet network's own allow lists can still decide.
   */
  denied: boolean;
  reason: string;
}

/** What a loader returns: the file's text, or why it could not be read as the caller. */
export type AclLoader = (file: string) => string | { error: string };

/**
 * Decide whether bridge.conf (root and its includes, read through `load`) lets the caller have a tap on
 * `bridge`. Pure given `load`. Denials start with "access denied by acl file" or "failed to parse".
 */
export function evaluateAcl(
  bridge: string,
  load: AclLoader,
  options: string | { root?: string; maxDepth?: number; maxFiles?: number } = {},
): AclDecision {
  const opts = typeof options === 'string' ? { root: options } : options;
  const root = opts.root ?? DEFAULT_ACL_FILE;
  const maxDepth = opts.maxDepth ?? MAX_INCLUDE_DEPTH;
  const maxFiles = opts.maxFiles ?? MAX_ACL_FILES;
  const nameProblem = badBridgeName(bridge);
  if (nameProblem) return { allowed: false, denied: true, reason: `access denied: ${nameProblem}` };

  const top = load(root);
  if (typeof top !== 'string') return { allowed: false, denied: false, reason: `failed to parse default acl file \`${root}': ${top.error}` };
  const seen = new Set<string>([root]);
  let allow: string | undefined;
  let deny: string | undefined;
  const stack: Array<{ text: string; file: string; depth: number }> = [{ text: top, file: root, depth: 1 }];
  while (stack.length > 0) {
    const { text, file, depth } = stack.pop()!;
    const parsed = parseAcl(text, file);
    if (parsed.problem !== undefined) {
      const which = file === root ? 'default acl file' : 'acl file';
      return { allowed: false, denied: true, reason: `failed to parse ${which} \`${file}': ${parsed.problem}` };
    }
    const includes: Array<{ text: string; file: string; depth: number }> = [];
    for (const rule of parsed.rules) {
      const where = `${file}:${rule.line}`;
      if (rule.kind === 'include') {
        if (seen.has(rule.path)) continue;
        if (depth + 1 > maxDepth)
          return { allowed: false, denied: true, reason: `failed to parse acl file \`${file}': line ${rule.line}: includes nest deeper than ${maxDepth} files` };
        if (seen.size + 1 > maxFiles)
          return { allowed: false, denied: true, reason: `failed to parse acl file \`${file}': line ${rule.line}: more than ${maxFiles} files included` };
        seen.add(rule.path);
        const got = load(rule.path);
        if (typeof got === 'string') includes.push({ text: got, file: rule.path, depth: depth + 1 });
      } else if (rule.name === 'all' || rule.name === bridge) {
        if (rule.kind === 'deny') deny ??= `${rule.kind} ${rule.name} (${where})`;
        else allow ??= `${rule.kind} ${rule.name} (${where})`;
      }
    }
    stack.push(...includes.reverse());
  }
  if (deny !== undefined) return { allowed: false, denied: true, reason: `access denied by acl file: ${deny}` };
  if (allow === undefined) return { allowed: false, denied: false, reason: `access denied by acl file: no rule allows \`${bridge}'` };
  return { allowed: true, denied: false, reason: `allowed by acl file: ${allow}` };
}

