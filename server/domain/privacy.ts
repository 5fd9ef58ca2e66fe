import { createHmac } from 'node:crypto';
import { isIPv4 } from 'node:net';
import type { Config } from '../config.js';

export const CLIENT_IP_STORAGE = ['full', 'truncated', 'hashed'] as const;
export type ClientIpStorage = (typeof CLIENT_IP_STORAGE)[number];

/**
 * The form in which a client IP is stored (CLIENT_IP_STORAGE): as given; truncated to its /24 (IPv4) or /48 (IPv6)
 * network; or an HMAC with CLIENT_IP_HASH_SALT, so that rows of one address can be grouped without keeping it.
 * The input is a validated IP address.
 */
export function storedClientIp(ip: string, config: Pick<Config, 'clientIpStorage' | 'clientIpHashSalt'>): string {
  switch (config.clientIpStorage) {
    case 'full':
      return ip;
    case 'hashed':
      return `h:${createHmac('sha256', config.clientIpHashSalt ?? '').update(ip).digest('hex').slice(0, 40)}`;
    case 'truncated':
      return isIPv4(ip) ? ip.split('.').slice(0, 3).concat('0').join('.') : truncateIpv6(ip);
  }
}

function truncateIpv6(ip: string): string {
  // An IPv4-mapped address is an IPv4 address.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return `::ffff:${mapped[1].split('.').slice(0, 3).concat('0').join('.')}`;
  const [head, tail = ''] = ip.split('::');
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const groups = ip.includes('::')
    ? [...headGroups, ...Array(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups]
    : headGroups;
  return `${groups.slice(0, 3).map((g) => g.toLowerCase().replace(/^0+(?=.)/, '')).join(':')}::`;
}
