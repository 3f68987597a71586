/** The source allow lists of the listeners that take no token (syslog.allow, journal.allow). */
import { BlockList, isIPv4 } from 'node:net';
import { parseCidr } from '../config';

/** IPv4 clients of a dual-stack socket are seen as ::ffff:a.b.c.d. */
const MAPPED = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

export class SourceFilter {
  private readonly list = new BlockList();

  /** `cidrs` were checked by loadConfig. */
  constructor(cidrs: readonly string[]) {
    for (const cidr of cidrs) {
      const [addr, prefix, family] = parseCidr(cidr)!;
      this.list.addSubnet(addr, prefix, family);
    }
  }

  allows(address: string | undefined): boolean {
    if (!address) return false;
    const v4 = MAPPED.exec(address)?.[1];
    if (v4) return this.list.check(v4, 'ipv4');
    return this.list.check(address, isIPv4(address) ? 'ipv4' : 'ipv6');
  }
}
