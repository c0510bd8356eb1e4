/** Who may get taps: allow lists of users and groups (neither: every local user). */
import { accountNameProblem } from '../../config/names.js';
import { stringList, type Section } from './section.js';

export const access: Section = {
  keys: {
    'allow-users'(v, s) {
      const r = stringList(v, accountNameProblem);
      if (typeof r === 'string') return r;
      s.access.allowUsers = r;
      return undefined;
    },
    'allow-groups'(v, s) {
      const r = stringList(v, accountNameProblem);
      if (typeof r === 'string') return r;
      s.access.allowGroups = r;
      return undefined;
    },
  },
};
