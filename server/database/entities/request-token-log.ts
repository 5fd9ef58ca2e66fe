import { defineEntity, p, type InferEntity } from '@mikro-orm/core';
import { ApiClient } from './api-client.js';
import { tenantFilter } from '../tenant.js';
import { RequestToken } from './request-token.js';

export const RequestTokenLog = defineEntity({
  name: 'RequestTokenLog',
  tableName: 'request_token_log',
  properties: {
    id: p.bigint('string').primary().autoincrement(),
    /** Null when the JWT could not be tied to a stored token. */
    token: () =>
      p
        .manyToOne(RequestToken)
        .nullable()
        .ref()
        .foreignKeyName('request_token_log_token_id_fkey')
        .updateRule('cascade')
        .deleteRule('set null'),
    /** Null on success. */
    errorCode: p.string().length(40).nullable(),
    userId: p.string().length(255).nullable().index(),
    clientIp: p.string().length(45).nullable(),
    userAgent: p.string().length(512).nullable(),
    statusCode: p.smallint().nullable(),
    timestamp: p.datetime().defaultRaw('now()').index(),
    /** Set when recordResponseStatus gave this redemption's use back. */
    releasedAt: p.datetime().nullable(),
    /** The tenant; null for refusals that could not be tied to a client's token or key. */
    clientId: () =>
      p
        .manyToOne(ApiClient)
        .mapToPk()
        .fieldName('client_id')
        .foreignKeyName('request_token_log_client_id_fkey')
        .updateRule('no action')
        .deleteRule('no action')
        .nullable(),
  },
  // Confined to the caller's client by default (server/database/tenant.ts).
  filters: { tenant: tenantFilter },
  indexes: [
    // A token's history, newest first.
    { name: 'request_token_log_token_id_index', properties: ['token', 'id'] },
    { name: 'request_token_log_client_id_index', properties: ['clientId', 'id'] },
  ],
});

export type RequestTokenLog = InferEntity<typeof RequestTokenLog>;
