import { defineEntity, p, type InferEntity } from '@mikro-orm/core';
import { RequestToken } from './request-token.js';

/**
 * The idempotency key of a successful redemption: a retry with the same key answers the same redemption. Apart from
 * the log so that the log can be partitioned and keys pruned on their own.
 *
 * It points at its log row by (token_id, log_id, log_timestamp), the log's whole primary key, so the row is found in
 * one partition; there is no foreign key (one to a partitioned table would have to name the partition key, and a row
 * must not block dropping a month). A replay answers from the token and the key alone, so it works even when the log
 * row's partition is gone; retention removes the keys of the rows it removes (server/domain/log-retention.ts).
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
        // No ON UPDATE CASCADE: token ids never change, and Citus refuses a cascade on the distribution column
        // (this key joins two tables distributed by token id).
        .updateRule('no action')
        .deleteRule('cascade'),
    key: p.string().length(255).primary(),
    /** What the redemption asked for, so that a retry asking for something else is told apart. */
    fingerprint: p.string().length(64),
    /** The log row's id; a release frees the key by (token_id, log_id), within the primary key's token_id range. */
    logId: p.bigint('string'),
    /** The log row's timestamp: with token_id and log_id, its primary key. Retention removes keys by it. */
    logTimestamp: p.datetime().index(),
    createdAt: p.datetime().defaultRaw('now()').index(),
  },
});

export type RequestTokenIdempotency = InferEntity<typeof RequestTokenIdempotency>;
