/** The bridge: its name and MTU. */
import { ifnameProblem } from '../../config/names.js';
import { int, type Section } from './section.js';

export const link: Section = {
  required: ['bridge'],
  keys: {
    bridge(v, s) {
      const p = ifnameProblem(v);
      if (p) return `bridge name ${p}`;
      if (v === 'all') return 'bridge name "all" means every bridge in bridge.conf; choose another name';
      s.bridge.name = v as string;
      return undefined;
    },
  },
};

export const mtu: Section = {
  keys: {
    mtu(v, s) {
      const n = int(v, 68, 65535);
      if (typeof n === 'string') return n;
      s.bridge.mtu = n;
      return undefined;
    },
  },
};
