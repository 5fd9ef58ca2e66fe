import { createHash, timingSafeEqual } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import { ApiKey, PERMISSIONS, type Permission } from '../database/entities/api-key.js';

import { generateApiKey, parseApiKey } from './api-key-format.js';

export { generateApiKey, parseApiKey };

export interface Caller {
  keyId: string;
  /** The key's tenant; null for admin keys. */
  clientId: string | null;
  permissions: readonly Permission[];
  /** Requests per minute allowed to this key; null: the server default. */
  rateLimitPerMinute?: number | null;
}

/**
 * The tenant a caller's reads and writes are confined to: its client, or null (every tenant) for admin keys.
 * Service functions take this explicitly so that no query forgets it.
 */
export type Tenant = string | null;
export const tenantOf = (caller: Caller): Tenant => (caller.permissions.includes('admin') ? null : caller.clientId);
export const hasPermission = (caller: Caller, permission: Permission) =>
  caller.permissions.includes('admin') || caller.permissions.includes(permission);

const hashSecret = (secret: string) => createHash('sha256').update(secret).digest('hex');


export interface NewApiKey {
  name: string;
  permissions: Permission[];
  /** Required unless the key is an admin key. */
  clientId?: string | null;
  expiresAt?: Date | null;
  rateLimitPerMinute?: number | null;
  /** A key chosen by the operator (REQUEST_TOKEN_ADMIN_KEY); generated when absent. */
  key?: string;
}

/** Stores a key's hash and returns the key in clear: the only time it is shown. */
export async function createApiKey(em: EntityManager, input: NewApiKey): Promise<{ apiKey: ApiKey; key: string }> {
  const parts = input.key ? parseApiKey(input.key) : null;
  if (input.key && !parts) throw new Error('API key must look like rt_<id>_<secret>');
  const { id, secret, key } = parts ? { ...parts, key: input.key! } : generateApiKey();
  for (const p of input.permissions) if (!PERMISSIONS.includes(p)) throw new Error(`unknown permission ${p}`);
  if (!input.clientId && !input.permissions.includes('admin')) throw new Error('a non-admin key needs a client');
  const apiKey = em.create(ApiKey, {
    id,
    name: input.name,
    secretHash: hashSecret(secret),
    permissions: input.permissions,
    clientId: input.clientId ?? null,
    expiresAt: input.expiresAt ?? null,
    rateLimitPerMinute: input.rateLimitPerMinute ?? null,
  });
  await em.flush();
  return { apiKey, key };
}

/**
 * Resolves a bearer key to its caller, or null. The secret is compared as a hash in constant time. Results are cached
 * briefly so that the hot path does not pay a query per request; revocation reaches other processes within that TTL.
 */
export function createAuthenticator(options: { ttlMs?: number } = {}) {
  const ttlMs = options.ttlMs ?? 5_000;
  const cache = new Map<string, { caller: Caller | null; until: number; expiresAt: number | null }>();
  const touched = new Map<string, number>();

  return {
    /** `em` may be a factory, so that a cache hit costs no EntityManager fork. */
    async authenticate(emOrFork: EntityManager | (() => EntityManager), key: string, now = Date.now()): Promise<Caller | null> {
      const hit = cache.get(key);
      if (hit && hit.until > now) {
        return hit.expiresAt !== null && hit.expiresAt <= now ? null : hit.caller;
      }
      const parts = parseApiKey(key);
      if (!parts) return null;
      const em = typeof emOrFork === 'function' ? emOrFork() : emOrFork;
      const row = await em.findOne(ApiKey, { id: parts.id }, { disableIdentityMap: true });
      let caller: Caller | null = null;
      if (row && !row.revokedAt) {
        const expected = Buffer.from(row.secretHash, 'hex');
        const actual = Buffer.from(hashSecret(parts.secret), 'hex');
        if (expected.length === actual.length && timingSafeEqual(expected, actual)) {
          caller = {
            keyId: row.id,
            clientId: row.clientId ?? null,
            permissions: row.permissions,
            rateLimitPerMinute: row.rateLimitPerMinute ?? null,
          };
        }
      }
      if (cache.size > 10_000) cache.clear();
      cache.set(key, { caller, until: now + ttlMs, expiresAt: row?.expiresAt?.getTime() ?? null });
      if (caller && row?.expiresAt && row.expiresAt.getTime() <= now) return null;
      if (caller && (touched.get(caller.keyId) ?? 0) < now - 60_000) {
        touched.set(caller.keyId, now);
        await em.nativeUpdate(ApiKey, { id: caller.keyId }, { lastUsedAt: new Date(now) });
      }
      return caller;
    },
    /** Forget cached results, e.g. after a key was revoked in this process. */
    clear: () => cache.clear(),
  };
}

export type Authenticator = ReturnType<typeof createAuthenticator>;
