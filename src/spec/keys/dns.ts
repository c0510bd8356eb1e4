/** DNS for guests: the domain they live in. */
import { domainProblem } from '../../config/names.js';
import type { Section } from './section.js';

export const dns: Section = {
  keys: {
    domain(v, s) {
      const p = domainProblem(v);
      if (p) return p;
      s.dns.domain = v as string;
      return undefined;
    },
  },
};
