import { defineEntity, p, type InferEntity } from '@mikro-orm/core';
import { RequestToken } from './request-token.js';
import { RequestTokenLog } from './request-token-log.js';

/**
 * The idempotency key of a successful redemption: a retry with the same key answers the same redemption. Apart from
 * the log so that the log can be partitioned and keys pruned on their own.
 */
export const RequestTokenIdempotency = defineEntity({
  name: 'RequestTokenIdempotency',
  tableName: 'request_token_idempotency',
  properties: {
    tokenId: () =>
      p
        .manyToOne(RequestToken)
        .mapToPk()
        .primary()
        .fieldName('token_id')
        .foreignKeyName('request_token_idempotency_token_id_fkey')
        .updateRule('cascade')
        .deleteRule('cascade'),
    key: p.string().length(255).primary(),
    /** What the redemption asked for, so that a retry asking for something else is told apart. */
    fingerprint: p.string().length(64),
    logId: () =>
      p
        .manyToOne(RequestTokenLog)
        .mapToPk()
        .fieldName('log_id')
        .foreignKeyName('request_token_idempotency_log_id_fkey')
        .updateRule('cascade')
        .deleteRule('cascade')
        .index(),
    createdAt: p.datetime().defaultRaw('now()').index(),
  },
});

export type RequestTokenIdempotency = InferEntity<typeof RequestTokenIdempotency>;
