import { defineEntity, p, type InferEntity } from '@mikro-orm/core';
import { ApiClient } from './api-client.js';

export const PERMISSIONS = ['issue', 'redeem', 'read', 'admin'] as const;
export type Permission = (typeof PERMISSIONS)[number];

/** An API key `rt_<id>_<secret>`: looked up by id; only a SHA-256 hash of the secret is stored. */
export const ApiKey = defineEntity({
  name: 'ApiKey',
  tableName: 'api_key',
  properties: {
    id: p.string().length(32).primary(),
    name: p.string().length(100),
    secretHash: p.string().length(64),
    permissions: p.array<Permission>(),
    /** The tenant; null only for admin keys, which see every tenant. */
    clientId: () =>
      p
        .manyToOne(ApiClient)
        .mapToPk()
        .fieldName('client_id')
        .foreignKeyName('api_key_client_id_fkey')
        .updateRule('no action')
        .deleteRule('no action')
        .nullable(),
    /** Requests per minute; null takes RATE_LIMIT_PER_MINUTE. */
    rateLimitPerMinute: p.integer().nullable(),
    createdAt: p.datetime().defaultRaw('now()'),
    lastUsedAt: p.datetime().nullable(),
    expiresAt: p.datetime().nullable(),
    revokedAt: p.datetime().nullable(),
  },
  checks: [
    { property: 'rateLimitPerMinute', expression: 'rate_limit_per_minute >= 0' },
    { name: 'api_key_client_or_admin', expression: `client_id is not null or 'admin' = any(permissions)` },
  ],
});

export type ApiKey = InferEntity<typeof ApiKey>;
