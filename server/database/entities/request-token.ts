import { defineEntity, p, type InferEntity } from '@mikro-orm/core';

export const LOGIN_MODES = ['NONE', 'REQUEST', 'SESSION'] as const;
export type LoginMode = (typeof LOGIN_MODES)[number];

export const TOKEN_STATUSES = ['ACTIVE', 'NOT_YET_VALID', 'EXPIRED', 'EXHAUSTED', 'REVOKED'] as const;
export type TokenStatus = (typeof TOKEN_STATUSES)[number];

export const RequestToken = defineEntity({
  name: 'RequestToken',
  tableName: 'request_token',
  properties: {
    id: p.bigint('string').primary().autoincrement(),
    scope: p.string().length(100).index(),
    targetUrl: p.text().nullable(),
    // The target URL taken apart at issue time, so that redemption can match it in SQL.
    targetHost: p.text().nullable().lazy(),
    targetPath: p.text().nullable().lazy(),
    targetParams: p.json<Record<string, string[]>>().nullable().lazy(),
    userId: p.string().length(255).nullable().index(),
    loginMode: p.enum([...LOGIN_MODES]).default('NONE'),
    data: p.json<Record<string, unknown>>().nullable(),
    maxUses: p.integer(),
    usedToDate: p.integer().default(0),
    issuedAt: p.datetime().defaultRaw('now()').index(),
    notBefore: p.datetime().nullable(),
    expiresAt: p.datetime().nullable(),
    revokedAt: p.datetime().nullable(),
  },
});

export type RequestToken = InferEntity<typeof RequestToken>;
