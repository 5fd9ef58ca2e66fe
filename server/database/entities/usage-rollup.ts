import { defineEntity, p, type InferEntity } from '@mikro-orm/core';

/**
 * Usage statistics per UTC hour, client, scope and outcome, compacted from the log and the tokens
 * (server/domain/usage-rollups.ts). Rows are rebuilt for a whole hour (deleted and inserted again), or added to by the
 * compaction for the hour its watermark moves through, never updated one attempt at a time, so the redemption path
 * writes nothing here.
 *
 * The key holds no nulls, so "nobody" is a sentinel: `client_id` 0 for attempts logged without a client (refusals
 * under an admin key that no token could be tied to), `scope` '' for attempts no stored token owns (a scope has at
 * least one character) and `error_code` '' for successful redemptions and for issued tokens. No foreign key to
 * `api_client`, because of the sentinel 0.
 */
/** The key after the time (client, scope, outcome) and the counts, shared by the hourly and the daily rollups. */
const rollupColumns = () => ({
  clientId: p.bigint('string').primary(),
  scope: p.string().length(100).primary(),
  errorCode: p.string().length(40).primary(),
  /** Log rows (redemption attempts) of this outcome. */
  attempts: p.integer().default(0),
  released: p.integer().default(0),
  status1xx: p.integer().default(0).fieldName('status_1xx'),
  status2xx: p.integer().default(0).fieldName('status_2xx'),
  status3xx: p.integer().default(0).fieldName('status_3xx'),
  status4xx: p.integer().default(0).fieldName('status_4xx'),
  status5xx: p.integer().default(0).fieldName('status_5xx'),
  unrecorded: p.integer().default(0),
  /** Tokens issued (counted on the '' outcome only). */
  issued: p.integer().default(0),
});

export const UsageRollup = defineEntity({
  name: 'UsageRollup',
  tableName: 'usage_rollup',
  properties: {
    hour: p.datetime().primary(),
    ...rollupColumns(),
  },
});

export type UsageRollup = InferEntity<typeof UsageRollup>;

/**
 * The same figures per UTC day (midnight to midnight UTC), client, scope and outcome: the sums of the day's rows in
 * `usage_rollup`, so that a window of 30 days reads 30 days of these rather than 720 hours of those. The compaction
 * writes a day's rows only once all 24 of its hours are compacted, and writes them again (in the same transaction)
 * whenever it rebuilds any of its hours, so they always equal the sums of the day's hourly rows. A day with a stale
 * hour is read hour by hour (and that hour from the log) until the compaction has rebuilt it.
 */
export const UsageRollupDay = defineEntity({
  name: 'UsageRollupDay',
  tableName: 'usage_rollup_day',
  properties: {
    day: p.datetime().primary(),
    ...rollupColumns(),
  },
});

export type UsageRollupDay = InferEntity<typeof UsageRollupDay>;

/**
 * Hours whose rollup rows no longer match the log and the tokens: rows written, changed or deleted there after the
 * hour was sealed. Statistics read such an hour from the log; the next compaction rebuilds it and removes the mark.
 */
export const UsageRollupStale = defineEntity({
  name: 'UsageRollupStale',
  tableName: 'usage_rollup_stale',
  properties: {
    hour: p.datetime().primary(),
  },
});

export type UsageRollupStale = InferEntity<typeof UsageRollupStale>;

/**
 * The compaction's two watermarks, one row (id 1, inserted by the migration), on whole minutes. The rollup rows hold
 * everything before `compacted_until` (unless marked stale): every hour before it, and the hour it falls in up to it;
 * writers of rows older than `sealed_until` mark their hours stale. `sealed_until` ≥ `compacted_until`; null: nothing
 * yet.
 */
export const UsageRollupState = defineEntity({
  name: 'UsageRollupState',
  tableName: 'usage_rollup_state',
  properties: {
    id: p.smallint().primary().autoincrement(false),
    sealedUntil: p.datetime().nullable(),
    compactedUntil: p.datetime().nullable(),
  },
  checks: [{ name: 'usage_rollup_state_one_row', expression: 'id = 1' }],
});

export type UsageRollupState = InferEntity<typeof UsageRollupState>;
