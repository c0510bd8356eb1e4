/**
 * dbus-next (with its XML parsers: ~70 files, tens of ms and MBs of heap at vnetd's start) is
 * loaded only once there is a bus to connect to; on a host without one it is never loaded. Every
 * D-Bus client in vnetd (firewalld, systemd-resolved) and the API on the bus load it through here.
 */
import { existsSync } from 'node:fs';

type DbusNext = typeof import('dbus-next');
let dbusNext: DbusNext | undefined;

export async function loadDbus(): Promise<DbusNext> {
  // a CommonJS module: its exports are the default export of the import
  dbusNext ??= ((await import('dbus-next')) as unknown as { default: DbusNext }).default;
  return dbusNext;
}

/** The module loadDbus() loaded; for code that runs only on a connected bus. */
export function loadedDbus(): DbusNext {
  if (!dbusNext) throw new Error('dbus-next is used before a bus was connected');
  return dbusNext;
}

/** False only for a `unix:path=` address whose socket does not exist: no bus to try. */
export function busMayExist(address: string): boolean {
  const m = /^unix:path=([^,;]+)$/.exec(address);
  return !m || existsSync(m[1]!);
}
