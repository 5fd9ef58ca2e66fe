import { createHash, timingSafeEqual } from 'node:crypto';
import { raw, type EntityManager } from '@mikro-orm/postgresql';
import { ApiKey, PERMISSIONS, type Permission } from '../database/entities/api-key.js';
import { generateApiKey, parseApiKey } from './api-key-format.js';

export { generateApiKey, parseApiKey };

/** An api_key row as PostgreSQL returns it (column names). */
interface ApiKeyRow {
  id: string;
  secret_hash: string;
  permissions: Permission[];
  client_id: string | null;
  rate_limit_per_minute: number | null;
  revoked_at: Date | null;
}

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

export const hashApiKeySecret = (secret: string) => createHash('sha256').update(secret).digest('hex');


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
    secretHash: hashApiKeySecret(secret),
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
    /**
     * The cached answer for `key` without a promise: the caller, null (refused), or undefined when the cache does not
     * know (then `authenticate`). The hot path settles a known key synchronously with it.
     */
    cached(key: string, now = Date.now()): Caller | null | undefined {
      const hit = cache.get(key);
      if (!hit || hit.until <= now) return undefined;
      return hit.expiresAt !== null && hit.expiresAt <= now ? null : hit.caller;
    },
    /** `em` may be a factory, so that a cache hit costs no EntityManager fork. */
    async authenticate(emOrFork: EntityManager | (() => EntityManager), key: string, now = Date.now()): Promise<Caller | null> {
      const hit = cache.get(key);
      if (hit && hit.until > now) {
        return hit.expiresAt !== null && hit.expiresAt <= now ? null : hit.caller;
      }
      const parts = parseApiKey(key);
      if (!parts) return null;
      const em = typeof emOrFork === 'function' ? emOrFork() : emOrFork;
      // Expiry is judged on the database's clock, like every other time in the service: the row comes with how long
      // it has left by `now()`, and cached results count that down on this process's clock.
      const row = await em
        .createQueryBuilder(ApiKey, 'k')
        .select(['*', raw('(extract(epoch from (k.expires_at - now())) * 1000)::float8 as remaining_ms')])
        .where({ id: parts.id })
        .execute<(ApiKeyRow & { remaining_ms: number | null }) | undefined>('get', false);
      let caller: Caller | null = null;
      if (row && !row.revoked_at) {
        const expected = Buffer.from(row.secret_hash, 'hex');
        const actual = Buffer.from(hashApiKeySecret(parts.secret), 'hex');
        if (expected.length === actual.length && timingSafeEqual(expected, actual)) {
          caller = {
            keyId: row.id,
            clientId: row.client_id ?? null,
            permissions: row.permissions,
            rateLimitPerMinute: row.rate_limit_per_minute ?? null,
          };
        }
      }
      const expiresAt = row?.remaining_ms == null ? null : now + row.remaining_ms;
      if (cache.size > 10_000) cache.clear();
      cache.set(key, { caller, until: now + ttlMs, expiresAt });
      if (caller && expiresAt !== null && expiresAt <= now) return null;
      if (caller && (touched.get(caller.keyId) ?? 0) < now - 60_000) {
        touched.set(caller.keyId, now);
        await em.nativeUpdate(ApiKey, { id: caller.keyId }, { lastUsedAt: raw('now()') });
      }
      return caller;
    },
    /** Forget cached results, e.g. after a key was revoked in this process. */
    clear: () => cache.clear(),
  };
}

export type Authenticator = ReturnType<typeof createAuthenticator>;
