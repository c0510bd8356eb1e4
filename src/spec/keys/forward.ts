/** `forward`: what vnet forwards for the network, and how. */
import type { Forward } from '../spec.js';
import type { Section } from './section.js';

const MODES: Record<string, Forward | string> = {
  nat: { mode: 'nat' },
  isolated: { mode: 'isolated' },
  route: 'forward mode "route" is not supported yet; use "nat" or "isolated"',
  open: 'forward mode "open" is not supported yet; use "nat" or "isolated"',
  bridge: 'forward mode "bridge" is not supported yet; use "nat" or "isolated"',
};

export const forward: Section = {
  keys: {
    forward(v, s) {
      const f = typeof v === 'string' && Object.hasOwn(MODES, v) ? MODES[v] : undefined;
      if (f === undefined) return `expected one of ${Object.keys(MODES).map((m) => `"${m}"`).join(', ')}`;
      if (typeof f === 'string') return f;
      s.forward = f;
      return undefined;
    },
  },
};
