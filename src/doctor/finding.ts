/**
 * What `vnet doctor` says: one finding per thing it looked at. A check is a pure function from
 * facts (gathered by a thin reader beside it) to findings, so each can be tested with facts alone.
 *
 * The shape is what `vnet doctor --json` prints, and stays stable for scripts:
 *   check     which check ("forwarding", "foreign-drop", ...)
 *   ok        false when something is wrong (then doctor exits 1)
 *   severity  "ok" | "info" (nothing wrong, but worth knowing, or something doctor could not read)
 *             | "warning" (something may break) | "error" (something breaks)
 *   problem   what is wrong or worth knowing, in a sentence; null when ok
 *   fix       the exact fix (commands), or null
 */
export type Severity = 'ok' | 'info' | 'warning' | 'error';

export interface Finding {
  check: string;
  ok: boolean;
  severity: Severity;
  problem: string | null;
  fix: string | null;
}

export function passed(check: string): Finding {
  return { check, ok: true, severity: 'ok', problem: null, fix: null };
}

/** nothing wrong, but worth saying (also: what doctor could not read, and why) */
export function note(check: string, problem: string, fix: string | null = null): Finding {
  return { check, ok: true, severity: 'info', problem, fix };
}

export function warning(check: string, problem: string, fix: string | null): Finding {
  return { check, ok: false, severity: 'warning', problem, fix };
}

export function failure(check: string, problem: string, fix: string | null): Finding {
  return { check, ok: false, severity: 'error', problem, fix };
}

/** A fact that could not be read: the reason (EACCES as a non-root user, a missing program). */
export interface Unreadable {
  unreadable: string;
}

export function isUnreadable(x: unknown): x is Unreadable {
  return typeof x === 'object' && x !== null && typeof (x as Unreadable).unreadable === 'string';
}

/** The short reason of a failed read: "EACCES", or the message. */
export function reasonOf(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'EACCES' || e?.code === 'EPERM') return 'permission denied (run as root to check this)';
  return e?.code ?? (e instanceof Error ? e.message : String(err));
}

/**
 * Text another user controls (a process name, a path in their qemu.conf), made safe to print:
 * control characters (a terminal's escape sequences) become "?", and it is cut at 200 characters.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  return clean.length > 200 ? `${clean.slice(0, 200)}…` : clean;
}

/** A note for a check whose facts could not be read. */
export function couldNotRead(check: string, what: string, why: string): Finding {
  return note(check, `could not read ${what}: ${why}`);
}
