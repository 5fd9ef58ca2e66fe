// The shape of an API key, apart from the database code so that `request-token keygen` loads nothing else.
import { randomBytes } from 'node:crypto';

const KEY_SHAPE = /^rt_([A-Za-z0-9]{8,32})_([A-Za-z0-9_-]{32,128})$/;
const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

export function generateApiKey(): { id: string; secret: string; key: string } {
  const id = Array.from(randomBytes(12), (b) => ALPHANUMERIC[b % ALPHANUMERIC.length]).join('');
  const secret = randomBytes(32).toString('base64url');
  return { id, secret, key: `rt_${id}_${secret}` };
}

export function parseApiKey(key: string): { id: string; secret: string } | null {
  const match = KEY_SHAPE.exec(key);
  return match ? { id: match[1], secret: match[2] } : null;
}
