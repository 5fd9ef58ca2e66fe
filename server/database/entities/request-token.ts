import { defineEntity, p, type InferEntity } from '@mikro-orm/core';
import { ApiClient } from './api-client.js';
import { tenantFilter } from '../tenant.js';

export const LOGIN_MODES = ['NONE', 'REQUEST', 'SESSION'] as const;
export type LoginMode = (typeof LOGIN_MODES)[number];

export const TOKEN_STATUSES = ['ACTIVE', 'NOT_YET_VALID', 'EXPIRED', 'EXHAUSTED', 'REVOKED'] as const;
export type TokenStatus = (typeof TOKEN_STATUSES)[number];

/**
 * Its pages are filled to 90 % (Migration20261130125500_request_token_fillfactor: a storage parameter, which an entity
 * cannot carry), so that a redemption's new row version fits on its page (a HOT update, no index entries).
 */
export const RequestToken = defineEntity({
  name: 'RequestToken',
  tableName: 'request_token',
  properties: {
    id: p.bigint('string').primary().autoincrement(),
    // No index of its own: `(scope, issued_at)` and `(scope, client_id, id)` below serve every lookup by scope
    // (test/indexes.test.ts).
    scope: p.string().length(100),
    targetUrl: p.text().nullable(),
    // The target URL taken apart at issue time, so that redemption can match it in SQL.
    targetHost: p.text().nullable().lazy(),
    targetPath: p.text().nullable().lazy(),
    targetParams: p.json<Record<string, string[]>>().nullable().lazy(),
    // Indexed with the id below: a user's tokens, newest first.
    userId: p.string().length(255).nullable(),
    loginMode: p.enum([...LOGIN_MODES]).default('NONE'),
    data: p.json<Record<string, unknown>>().nullable(),
    maxUses: p.integer(),
    usedToDate: p.integer().default(0),
    issuedAt: p.datetime().defaultRaw('now()').index(),
    notBefore: p.datetime().nullable(),
    expiresAt: p.datetime().nullable(),
    revokedAt: p.datetime().nullable(),
    /** The tenant owning the token; every insert names it (no default). */
    clientId: () =>
      p
        .manyToOne(ApiClient)
        .mapToPk()
        .fieldName('client_id')
        .foreignKeyName('request_token_client_id_fkey')
        .updateRule('no action')
        .deleteRule('no action'),
    /** The signing key of its JWT; null for tokens issued before key rotation existed (no kid in their header). */
    kid: p.string().length(64).nullable(),
  },
  // Confined to the caller's client by default (server/database/tenant.ts).
  filters: { tenant: tenantFilter },
  checks: [
    { property: 'maxUses', expression: 'max_uses >= 1' },
    { property: 'usedToDate', expression: 'used_to_date >= 0' },
  ],
  indexes: [
    // Tenant listings, newest first.
    { name: 'request_token_client_id_index', properties: ['clientId', 'id'] },
    // A user's tokens newest first, the page read in index order (21 rows, not every row of the user sorted, nor the
    // primary key walked backwards past other users' tokens); forgetUser's lookups by user too.
    { name: 'request_token_user_id_id_index', properties: ['userId', 'id'] },
    // Usage statistics and bulk revocation filter by scope and issue time together.
    { name: 'request_token_scope_issued_at_index', properties: ['scope', 'issuedAt'] },
    // A tenant's tokens of one scope newest first, the page read in index order: 21 entries, not the primary key walked
    // backwards past the newer tokens of other scopes (20,000 in bench:scale: 11 ms), nor the scope's tokens sorted.
    // The listing states its order so that the planner takes it (listTokens, server/domain/tokens.ts).
    { name: 'request_token_scope_client_id_id_index', properties: ['scope', 'clientId', 'id'] },
  ],
});

export type RequestToken = InferEntity<typeof RequestToken>;
