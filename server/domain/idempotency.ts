import { createHash } from 'node:crypto';
import { queryPrepared } from '../database/prepared-query.js';
import type pg from 'pg';
import { Issues } from './errors.js';
import { tokenColumns, type TokenRow } from './tokens.js';
import { namedStatement } from './named-sql.js';
import type { Tenant } from './api-keys.js';

/**
 * Idempotency keys of successful redemptions. A key is scoped to one token: the same key on another token is another
 * key. The row is written by the redemption statement itself (server/domain/redeem.ts), so a counted use and its key
 * commit together; the primary key (token_id, key) makes a concurrent second use of the key fail its whole statement,
 * which rolls back its use as well. Keys are kept until the redemption's use is released or the row is pruned (at
 * least 24 hours: see docs/scaling.md).
 */

export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;
export const IDEMPOTENCY_CONFLICT_CONSTRAINT = 'request_token_idempotency_pkey';

export interface RedemptionParameters {
  scope: string;
  url: string | null;
  userId: string | null;
  clientIp: string | null;
  userAgent: string | null;
}

/** What a retry must repeat exactly; anything else under the same key is a client mistake. */
export function fingerprint(parameters: RedemptionParameters): string {
  const { scope, url, userId, clientIp, userAgent } = parameters;
  return createHash('sha256').update(JSON.stringify([scope, url, userId, clientIp, userAgent])).digest('hex');
}

const REPLAY_SQL = namedStatement(
  'redeem-replay',
  `select k.fingerprint, k.log_id, tok.*
  from request_token_idempotency k
  cross join lateral (select ${tokenColumns()} from request_token where id = k.token_id) tok
  where k.token_id = :tokenId and k.key = :key and (:tenant is null or tok.client_id = :tenant)`,
  { tokenId: 'bigint', key: 'text', tenant: 'bigint', tolerance: 'int' },
);

/** The token as it stands now, with the log row of the redemption that used the key. */
export type ReplayRow = TokenRow & { fingerprint: string; log_id: string };

/**
 * The token row (as it stands now) and log id of the redemption that used `key` on this token, or null. Throws a
 * ValidationError when the key was used with other parameters.
 */
export async function findReplay(
  pool: pg.Pool,
  tokenId: string,
  key: string,
  expected: string,
  /** Another client's token has no replay, as it has no redemption. */
  tenant: Tenant,
  /** CLOCK_TOLERANCE_SECONDS, for the token's status. */
  tolerance: number,
): Promise<ReplayRow | null> {
  const { rows } = await queryPrepared<ReplayRow>(pool, REPLAY_SQL.bind({ tokenId, key, tenant, tolerance }));
  if (!rows[0]) return null;
  if (rows[0].fingerprint !== expected) {
    const issues = new Issues();
    issues.add(
      ['input', 'idempotencyKey'],
      'was already used for this token with different parameters (scope, url, userId, clientIp or userAgent)',
    );
    issues.throwIfAny();
  }
  return rows[0];
}

/** Deletes keys older than `hours` (never fewer than 24); returns how many. Safe to run from every instance at once. */
export async function pruneIdempotencyKeys(pool: pg.Pool, hours: number): Promise<number> {
  const { rowCount } = await pool.query(
    'delete from request_token_idempotency where created_at < now() - make_interval(hours => $1)',
    [Math.max(24, hours)],
  );
  return rowCount ?? 0;
}

/** True for the unique violation of a second, concurrent redemption with the same key. */
export function isKeyConflict(error: unknown): boolean {
  const e = error as { code?: string; constraint?: string } | null;
  return e?.code === '23505' && e.constraint === IDEMPOTENCY_CONFLICT_CONSTRAINT;
}
