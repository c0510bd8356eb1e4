/**
 * Names on the bus: the well-known name, object paths and error names of vnet's
 * D-Bus API. Pure functions, no connection.
 */

export const BUS_NAME = 'org.vnet.Vnet1';
export const MANAGER_PATH = '/org/vnet/Vnet1';
export const NETWORKS_PATH = '/org/vnet/Vnet1/Networks';
export const MANAGER_IFACE = 'org.vnet.Vnet1.Manager';
export const NETWORK_IFACE = 'org.vnet.Vnet1.Network';
export const ERROR_PREFIX = 'org.vnet.Vnet1.Error';

/**
 * One object-path element for a network name. Every byte outside [A-Za-z0-9] becomes
 * "_" and two lower-case hex digits (systemd's bus label escaping), so the mapping can
 * be undone: "_" itself is escaped too, or "a-" and "a_2d" would share a path.
 */
export function escapePathElement(name: string): string {
  if (name === '') return '_';
  let out = '';
  for (const byte of Buffer.from(name, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9]/.test(c) ? c : `_${byte.toString(16).padStart(2, '0')}`;
  }
  return out;
}

/** The inverse of escapePathElement; undefined when `element` is not such an escape. */
export function unescapePathElement(element: string): string | undefined {
  if (element === '_') return '';
  const bytes: number[] = [];
  for (let i = 0; i < element.length; ) {
    const c = element[i]!;
    if (c === '_') {
      const hex = element.slice(i + 1, i + 3);
      if (!/^[0-9a-f]{2}$/.test(hex)) return undefined;
      bytes.push(parseInt(hex, 16));
      i += 3;
    } else if (/[A-Za-z0-9]/.test(c)) {
      bytes.push(c.charCodeAt(0));
      i += 1;
    } else {
      return undefined;
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

export function networkPath(name: string): string {
  return `${NETWORKS_PATH}/${escapePathElement(name)}`;
}

/**
 * The network name an object path stands for, or undefined when it is no network path.
 * Only the canonical escape counts (networkPath(name) === path): "_6c_61_62" is not "lab".
 */
export function networkNameOf(path: string): string | undefined {
  if (!path.startsWith(`${NETWORKS_PATH}/`)) return undefined;
  const element = path.slice(NETWORKS_PATH.length + 1);
  if (element.includes('/')) return undefined;
  const name = unescapePathElement(element);
  return name !== undefined && escapePathElement(name) === element ? name : undefined;
}
