import type pg from 'pg';
import { Issues } from './errors.js';
import { checkString, MAX_USER_ID_LENGTH } from './validation.js';
import type { Tenant } from './api-keys.js';

export interface Forgotten {
  revokedTokens: number;
  anonymisedLogs: number;
}

// One statement: the user's tokens (of the caller's tenant) are revoked and lose their user id and data; their log
// rows, and any row that names the user, lose user id, client IP and user agent. Rows stay, so counts stay right.
const FORGET_SQL = `with tokens as (
    select id from request_token where user_id = $1 and ($2::bigint is null or client_id = $2::bigint)
  ), logs as (
    update request_token_log set user_id = null, client_ip = null, user_agent = null
    where ($2::bigint is null or client_id = $2::bigint)
      and (user_id = $1 or token_id in (select id from tokens))
    returning id
  ), revoked as (
    update request_token set revoked_at = coalesce(revoked_at, now()), user_id = null, data = null
    where id in (select id from tokens)
    returning id
  )
  select (select count(*) from revoked)::int as revoked_tokens, (select count(*) from logs)::int as anonymised_logs`;

/** Revokes a user's tokens and anonymises their log rows while keeping the counts (erasure requests). */
export async function forgetUser(pool: pg.Pool, userId: string, tenant: Tenant): Promise<Forgotten> {
  const issues = new Issues();
  checkString(issues, ['userId'], userId, { min: 1, max: MAX_USER_ID_LENGTH });
  issues.throwIfAny();
  const { rows } = await pool.query(FORGET_SQL, [userId, tenant]);
  return { revokedTokens: rows[0].revoked_tokens, anonymisedLogs: rows[0].anonymised_logs };
}
