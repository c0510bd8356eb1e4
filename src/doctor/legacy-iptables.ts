/**
 * iptables-legacy: rules in the kernel's older x_tables, which `nft list ruleset` does not show
 * and which still drop what they drop, whatever vnet's table accepts. A host where some tool still
 * runs iptables-legacy (an old Docker, a VPN client, a script) can have a FORWARD policy of DROP
 * there. Pure parsing of `iptables-legacy -S` here; the reading is in foreign-drops.ts.
 */

export interface LegacyFilter {
  /** "ip" or "ip6" */
  family: 'ip' | 'ip6';
  /** the FORWARD chain's policy, "DROP" or "ACCEPT" */
  forwardPolicy: string | undefined;
  /** FORWARD rules that end in DROP or REJECT, as listed ("-A FORWARD -i eth1 -j DROP") */
  forwardDrops: string[];
  /** how many rules the table holds in all (-A lines) */
  rules: number;
}

/** `iptables-legacy -t filter -S` → what doctor needs of it. */
export function parseLegacyFilter(family: 'ip' | 'ip6', listing: string): LegacyFilter {
  let forwardPolicy: string | undefined;
  const forwardDrops: string[] = [];
  let rules = 0;
  for (const raw of listing.split('\n')) {
    const line = raw.trim();
    const policy = /^-P FORWARD (\S+)$/.exec(line);
    if (policy) forwardPolicy = policy[1];
    if (!line.startsWith('-A ')) continue;
    rules++;
    if (line.startsWith('-A FORWARD ') && / -j (DROP|REJECT)\b/.test(line)) forwardDrops.push(line);
  }
  return { family, forwardPolicy, forwardDrops, rules };
}

/** The command of a family: iptables-legacy or ip6tables-legacy. */
export function legacyBinary(family: 'ip' | 'ip6'): string {
  return family === 'ip' ? 'iptables-legacy' : 'ip6tables-legacy';
}
