/**
 * vnet's table as data: what a listing says it holds (TableState), the per-network pieces vnet
 * wants in it (Part), and the one-transaction changes between them. Pure: the nft backend runs
 * the transactions and lists the table; `simulate` tells what a transaction vnet ran left behind,
 * so a change needs no listing afterwards.
 */
import { ruleKey, type Rule } from './expr.js';
import { BASE_CHAINS, MAPS, TABLE, type MapName } from './layout.js';

/** One network's objects in the table: its chains (named by bridge) and its map entries. */
export interface Part {
  /** the network's bridge: unique, and what names its chains */
  bridge: string;
  chains: Array<{ name: string; rules: Rule[] }>;
  elements: Array<{ map: MapName; key: unknown; target: string }>;
}

export interface ChainState {
  /** set for base chains: their hook definition as canonical text */
  base?: string;
  /** canonical text of each rule, in order */
  rules: string[];
}

export interface MapState {
  /** the map's definition as canonical text (type, flags) */
  def: string;
  /** canonical key text → the chain its verdict jumps to */
  elems: Map<string, string>;
}

export interface TableState {
  exists: boolean;
  chains: Map<string, ChainState>;
  maps: Map<string, MapState>;
}

export type NftCommand = Record<string, Record<string, unknown>>;
export interface Transaction {
  nftables: NftCommand[];
}

const T = { family: TABLE.family, table: TABLE.name };

export function emptyTable(): TableState {
  return { exists: false, chains: new Map(), maps: new Map() };
}

function baseDef(c: { type?: unknown; hook?: unknown; prio?: unknown; policy?: unknown }): string {
  return JSON.stringify([c.type, c.hook, c.prio, c.policy]);
}

function mapDefText(m: { type?: unknown; flags?: unknown }): string {
  const interval = Array.isArray(m.flags) && m.flags.includes('interval');
  return JSON.stringify([m.type, interval]);
}

/** The state the base structure alone gives (no networks). */
function baseState(): TableState {
  const s: TableState = { exists: true, chains: new Map(), maps: new Map() };
  for (const c of BASE_CHAINS) s.chains.set(c.name, { base: baseDef(c), rules: c.rules.map(ruleKey) });
  for (const m of MAPS) s.maps.set(m.name, { def: mapDefText({ type: m.type, flags: m.interval ? ['interval'] : [] }), elems: new Map() });
  return s;
}

/**
 * Parse `nft -j list table inet vnet` output. Anything vnet does not write (another kind of
 * object, a statement of a shape it never uses) is kept as text, so it compares unequal and
 * gets replaced rather than ignored.
 */
export function parseListing(json: unknown): TableState {
  const s = emptyTable();
  const items = (json as { nftables?: unknown } | null)?.nftables;
  if (!Array.isArray(items)) return s;
  for (const item of items as Array<Record<string, Record<string, unknown>>>) {
    if (item.table) s.exists = true;
    const c = item.chain;
    if (c && typeof c.name === 'string') s.chains.set(c.name, { ...(c.hook !== undefined ? { base: baseDef(c) } : {}), rules: [] });
    const r = item.rule;
    if (r && typeof r.chain === 'string') {
      const chain = s.chains.get(r.chain) ?? { rules: [] };
      chain.rules.push(ruleKey(r.expr));
      s.chains.set(r.chain, chain);
    }
    const m = item.map ?? item.set;
    if (m && typeof m.name === 'string') {
      const elems = new Map<string, string>();
      for (const e of Array.isArray(m.elem) ? m.elem : []) {
        const [key, verdict] = Array.isArray(e) ? e : [e, undefined];
        const target = (verdict as { jump?: { target?: unknown } } | undefined)?.jump?.target;
        elems.set(ruleKey(key), typeof target === 'string' ? target : ruleKey(verdict));
      }
      s.maps.set(m.name, { def: item.set ? 'set' : mapDefText(m), elems });
    }
  }
  return s;
}

/** Is the base structure (base chains, their dispatch rules, the maps' definitions) as vnet builds it? */
export function baseIntact(s: TableState): boolean {
  if (!s.exists) return false;
  const want = baseState();
  for (const [name, c] of want.chains) {
    const have = s.chains.get(name);
    if (!have || have.base !== c.base || ruleKey(have.rules) !== ruleKey(c.rules)) return false;
  }
  for (const [name, m] of want.maps) if (s.maps.get(name)?.def !== m.def) return false;
  for (const [name, c] of s.chains) if (c.base !== undefined && !want.chains.has(name)) return false;
  for (const name of s.maps.keys()) if (!want.maps.has(name)) return false;
  return true;
}

/** Does the table hold exactly `part`'s chains and map entries? */
export function partIntact(s: TableState, part: Part): boolean {
  for (const c of part.chains) {
    const have = s.chains.get(c.name);
    if (!have || have.base !== undefined || ruleKey(have.rules) !== ruleKey(c.rules.map(ruleKey))) return false;
  }
  return part.elements.every((e) => s.maps.get(e.map)?.elems.get(ruleKey(e.key)) === e.target);
}

/** Chains and entries in the table that none of `parts` (nor the base) accounts for. */
export function strays(s: TableState, parts: readonly Part[]): { chains: string[]; elements: Array<{ map: string; key: string }> } {
  const chains = new Set(parts.flatMap((p) => p.chains.map((c) => c.name)));
  const elements = new Set(parts.flatMap((p) => p.elements.map((e) => `${e.map}\0${ruleKey(e.key)}`)));
  return {
    chains: [...s.chains].filter(([name, c]) => c.base === undefined && !chains.has(name)).map(([name]) => name),
    elements: [...s.maps].flatMap(([map, m]) => [...m.elems.keys()].filter((k) => !elements.has(`${map}\0${k}`)).map((key) => ({ map, key }))),
  };
}

// ---- transactions ----

const addChain = (name: string, base?: (typeof BASE_CHAINS)[number]): NftCommand => ({
  add: { chain: { ...T, name, ...(base ? { type: base.type, hook: base.hook, prio: base.prio, policy: base.policy } : {}) } },
});
const addRule = (chain: string, expr: Rule): NftCommand => ({ add: { rule: { ...T, chain, expr } } });
const addElement = (map: string, key: unknown, target: string): NftCommand => ({
  add: { element: { ...T, name: map, elem: [[key, { jump: { target } }]] } },
});
const deleteElement = (map: string, keyText: string): NftCommand => ({ delete: { element: { ...T, name: map, elem: [JSON.parse(keyText)] } } });
const removeChain = (name: string): NftCommand[] => [{ flush: { chain: { ...T, name } } }, { delete: { chain: { ...T, name } } }];
const tableRef = { family: TABLE.family, name: TABLE.name };

/**
 * The whole table for these parts, replacing whatever is there, in one transaction. Chains come
 * before maps: nft 1.0.6 refuses, in one transaction, an interval map's element that jumps to a
 * chain created after the map ("No such file or directory").
 */
export function rebuild(parts: readonly Part[]): Transaction {
  const cmds: NftCommand[] = [{ add: { table: tableRef } }, { delete: { table: tableRef } }];
  if (parts.length === 0) return { nftables: cmds };
  cmds.push({ add: { table: tableRef } });
  for (const c of BASE_CHAINS) cmds.push(addChain(c.name, c));
  for (const p of parts) for (const c of p.chains) cmds.push(addChain(c.name));
  for (const m of MAPS) cmds.push({ add: { map: { ...T, name: m.name, type: m.type, map: 'verdict', ...(m.interval ? { flags: ['interval'] } : {}) } } });
  for (const c of BASE_CHAINS) for (const r of c.rules) cmds.push(addRule(c.name, r));
  for (const p of parts) cmds.push(...partRulesAndElements(p));
  return { nftables: cmds };
}

function partRulesAndElements(p: Part): NftCommand[] {
  const cmds: NftCommand[] = [];
  for (const c of p.chains) for (const r of c.rules) cmds.push(addRule(c.name, r));
  for (const e of p.elements) cmds.push(addElement(e.map, e.key, e.target));
  return cmds;
}

/**
 * One network's change in one transaction: the chains named in `remove` that the table holds go,
 * with every map entry that jumps to them, then `add` (if given) comes whole. Replacing a network
 * is both at once, so no packet ever sees it half made.
 */
export function changePart(s: TableState, remove: readonly string[], add?: Part): Transaction {
  const gone = new Set(remove.filter((c) => s.chains.has(c)));
  const cmds: NftCommand[] = [];
  for (const [map, m] of s.maps) for (const [key, target] of m.elems) if (gone.has(target)) cmds.push(deleteElement(map, key));
  for (const c of gone) cmds.push(...removeChain(c));
  if (add) {
    for (const c of add.chains) cmds.push(addChain(c.name));
    cmds.push(...partRulesAndElements(add));
  }
  return { nftables: cmds };
}

/** Does the table hold any chain of these names? */
export function holdsAny(s: TableState, chains: readonly string[]): boolean {
  return chains.some((c) => s.chains.has(c));
}

/** Remove chains and entries no network accounts for. */
export function removeStrays(st: ReturnType<typeof strays>): Transaction {
  return { nftables: [...st.elements.map((e) => deleteElement(e.map, e.key)), ...st.chains.flatMap(removeChain)] };
}

/** What the table holds after vnet's own transaction `tx` succeeded on `s` (a copy; `s` is unchanged). */
export function simulate(s: TableState, tx: Transaction): TableState {
  let out: TableState = { exists: s.exists, chains: new Map([...s.chains].map(([k, v]) => [k, { ...v, rules: [...v.rules] }])), maps: new Map([...s.maps].map(([k, v]) => [k, { def: v.def, elems: new Map(v.elems) }])) };
  for (const cmd of tx.nftables) {
    const [verb, body] = Object.entries(cmd)[0]!;
    const [kind, obj] = Object.entries(body)[0]! as [string, Record<string, unknown>];
    if (kind === 'table') {
      if (verb === 'add') out.exists = true;
      else out = emptyTable();
    } else if (kind === 'chain') {
      const name = obj.name as string;
      if (verb === 'add') out.chains.set(name, { ...(obj.hook !== undefined ? { base: baseDef(obj) } : {}), rules: [] });
      else if (verb === 'flush') out.chains.get(name)!.rules = [];
      else out.chains.delete(name);
    } else if (kind === 'rule') {
      out.chains.get(obj.chain as string)!.rules.push(ruleKey(obj.expr));
    } else if (kind === 'map') {
      out.maps.set(obj.name as string, { def: mapDefText(obj), elems: new Map() });
    } else if (kind === 'element') {
      const elems = out.maps.get(obj.name as string)!.elems;
      for (const e of obj.elem as unknown[]) {
        if (verb === 'add') {
          const [key, verdict] = e as [unknown, { jump: { target: string } }];
          elems.set(ruleKey(key), verdict.jump.target);
        } else elems.delete(ruleKey(e));
      }
    }
  }
  return out;
}

/** Number of rules in the table (base chains included): what `make bench` reports per network. */
export function ruleCount(s: TableState): number {
  let n = 0;
  for (const c of s.chains.values()) n += c.rules.length;
  return n;
}
