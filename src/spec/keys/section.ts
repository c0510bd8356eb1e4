/**
 * A section of the definition file: the keys it owns, each with a parser that checks a value and
 * writes it into the spec being built, and checks that span its keys once all are read. A
 * feature with keys of its own is a new section, registered in spec/parse.ts.
 */
import type { NetworkSpec } from '../spec.js';

/** Returns the problem with `value`, or undefined after writing it into `spec`. */
export type KeyParser = (value: unknown, spec: NetworkSpec) => string | undefined;

/** Fail a definition naming the key and its value. */
export type Fail = (key: string, value: unknown, problem: string) => never;

export interface Section {
  keys: Record<string, KeyParser>;
  /** keys a definition must have */
  required?: string[];
  /** checks across keys, run after every key was parsed; `has` tells which keys the file set */
  check?(spec: NetworkSpec, fail: Fail, has: (key: string) => boolean): void;
}

export function show(value: unknown): string {
  const s = typeof value === 'bigint' ? String(value) : JSON.stringify(value);
  if (s === undefined) return String(value);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

export function stringList(value: unknown, check: (s: unknown) => string | undefined): string[] | string {
  if (!Array.isArray(value)) return 'expected an array of names, e.g. ["alice", "bob"]';
  const out: string[] = [];
  for (const item of value) {
    const p = check(item);
    if (p) return `element ${show(item)} ${p}`;
    out.push(item as string);
  }
  return out;
}

export function int(value: unknown, min: number, max: number): number | string {
  if (typeof value !== 'number' && typeof value !== 'bigint') return `expected an integer ${min}..${max}`;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) return `expected an integer ${min}..${max}`;
  return n;
}

export function bool(value: unknown): boolean | string {
  return typeof value === 'boolean' ? value : 'expected true or false';
}
