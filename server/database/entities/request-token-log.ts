import { defineEntity, p, type InferEntity } from '@mikro-orm/core';
import { ApiClient } from './api-client.js';
import { tenantFilter } from '../tenant.js';
import { RequestToken } from './request-token.js';

/** The log's token id for refusals that no stored token owns (malformed JWT, bad signature, unknown id): no token has id 0. */
export const NO_TOKEN_ID = '0';

/**
 * Every redemption attempt, successful or refused.
 *
 * Partitioned: in the database `request_token_log` is `PARTITION BY RANGE ("timestamp")`, one partition per calendar
 * month (UTC) named `request_token_log_yYYYYmMM` (the migration Migration20261130090000_log_partitioned_by_month, kept
 * ahead by server/domain/log-partitions.ts). MikroORM cannot declare partitioning, so this entity describes the
 * partitioned parent (its columns, keys and indexes, which every partition inherits) and test/schema-sync.test.ts
 * compares exactly that and checks the partitioning on its own.
 *
 * The primary key is (token_id, id, timestamp): token_id first so that a token's history is one range of the key (and
 * Citus can distribute by it), timestamp because a partitioned table's unique keys must contain the partition key.
 * There is no foreign key to request_token: tokens are never deleted, an audit row outlives anything, and refusals that
 * no token owns carry NO_TOKEN_ID.
 */
export const RequestTokenLog = defineEntity({
  name: 'RequestTokenLog',
  tableName: 'request_token_log',
  properties: {
    /** NO_TOKEN_ID ('0') when the JWT could not be tied to a stored token. */
    token: () => p.manyToOne(RequestToken).primary().ref().createForeignKeyConstraint(false),
    /** From its own sequence, so ids are unique across partitions; lookups by id alone (and paging) use its index. */
    id: p.bigint('string').primary().autoincrement().index(),
    timestamp: p.datetime().primary().defaultRaw('now()').index(),
    /** Null on success. */
    errorCode: p.string().length(40).nullable(),
    /** Indexed with the id below: a user's attempts newest first. */
    userId: p.string().length(255).nullable(),
    clientIp: p.string().length(45).nullable(),
    userAgent: p.string().length(512).nullable(),
    statusCode: p.smallint().nullable(),
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
  primaryKeys: ['token', 'id', 'timestamp'],
  // Confined to the caller's client by default (server/database/tenant.ts).
  filters: { tenant: tenantFilter },
  indexes: [
    { name: 'request_token_log_client_id_index', properties: ['clientId', 'id'] },
    // A user's attempts newest first, the page read in index order (not every row of the user fetched and sorted, nor
    // the id index walked backwards past other users' rows); forgetUser's lookups by user too. It carries the row's
    // client (INCLUDE, not a key column: the order stays the user's, then the id): a tenant's count of one user's rows
    // (a listing's totalCount, server/domain/log-counts.ts) reads the index alone, without visiting each row's page
    // for its client. MikroORM 6 cannot declare INCLUDE: the statement is written out (compared by
    // test/schema-sync.test.ts as PostgreSQL prints it).
    {
      name: 'request_token_log_user_id_id_client_id_index',
      expression:
        'create index "request_token_log_user_id_id_client_id_index" on "request_token_log" ("user_id", "id") include ("client_id")',
    },
  ],
});

export type RequestTokenLog = InferEntity<typeof RequestTokenLog>;
