/** When the network is up: on demand, idle-down, its standby between VMs, and at vnetd's start. */
import { bool, int, type Section } from './section.js';

export const lifecycle: Section = {
  keys: {
    'on-demand'(v, s) {
      const b = bool(v);
      if (typeof b === 'string') return b;
      s.lifecycle.onDemand = b;
      return undefined;
    },
    'idle-down'(v, s) {
      const n = int(v, 0, 86400);
      if (typeof n === 'string') return `${n} (seconds)`;
      s.lifecycle.idleDown = n;
      return undefined;
    },
    autostart(v, s) {
      const b = bool(v);
      if (typeof b === 'string') return b;
      s.lifecycle.autostart = b;
      return undefined;
    },
    standby(v, s) {
      if (v !== 'none' && v !== 'stub') return 'expected "none" or "stub"';
      s.lifecycle.standby = v;
      return undefined;
    },
  },
};
