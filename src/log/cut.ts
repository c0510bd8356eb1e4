/**
 * Log fields that carry someone else's bytes (a caller's request, a D-Bus argument, a line a
 * child printed) are cut to a fixed size before they are logged, so that nobody can make
 * vnetd's log grow faster than by one short line per event.
 */

/** The most UTF-8 bytes a log field carrying outside input may take. */
export const MAX_FIELD_BYTES = 256;

/**
 * `text` in at most `max` bytes of UTF-8. When it is longer, its head (never cut inside a
 * character) is followed by "… (N characters)", N being the whole text's length, all within
 * `max`. Costs O(max) whatever the text's size: a 10 MB name is not even measured in bytes.
 */
export function cut(text: string, max = MAX_FIELD_BYTES): string {
  // a UTF-16 unit is at most 3 bytes of UTF-8 (a surrogate pair is 4 for 2 units), at least 1
  if (text.length * 3 <= max) return text;
  if (text.length <= max && Buffer.byteLength(text, 'utf8') <= max) return text;
  const marker = `… (${text.length} characters)`;
  const room = Math.max(0, max - Buffer.byteLength(marker, 'utf8'));
  let used = 0;
  let end = 0;
  // by code point (a surrogate pair is never split), at most `room` of them
  while (end < text.length) {
    const cp = text.codePointAt(end)!;
    const size = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4; // a lone surrogate is written as U+FFFD: 3
    if (used + size > room) break;
    used += size;
    end += cp > 0xffff ? 2 : 1;
  }
  return text.slice(0, end) + marker;
}

/** Stack frames kept under an error's cut first line; frames are vnetd's code, not input. */
const MAX_FRAMES_BYTES = 2048;

export interface ErrField {
  type: string;
  message: string;
  code?: string;
  stack?: string;
}

/**
 * An error as a log field: its type, its message (with those of its causes, as pino shows
 * them) cut, a string `code`, and its stack frames under the cut message. Logged as `err`, it
 * reads like pino's serialisation of an error, without the caller's bytes. (No prototype:
 * pino's error serialiser would otherwise name its type "Object".)
 */
export function errField(err: unknown): ErrField {
  const out = Object.create(null) as ErrField;
  if (!(err instanceof Error)) return Object.assign(out, { type: typeof err, message: cut(String(err)) });
  const messages: string[] = [];
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) messages.push(e.message);
  out.type = err.name;
  out.message = cut(messages.join(': '));
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') out.code = cut(code, 64);
  const at = err.stack?.indexOf('\n    at ') ?? -1;
  if (at >= 0) out.stack = `${err.name}: ${out.message}${err.stack!.slice(at, at + MAX_FRAMES_BYTES)}`;
  return out;
}
