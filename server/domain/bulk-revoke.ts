import type pg from 'pg';
import { Issues } from './errors.js';
import { checkString, MAX_USER_ID_LENGTH } from './validation.js';
import type { Tenant } from './api-keys.js';
import { MAX_SCOPE_LENGTH } from './tokens.js';

export interface BulkRevokeFilter {
  userId?: string | null;
  scope?: string | null;
  /** Only tokens issued strictly before this instant. */
  issuedBefore?: Date | null;
}

export interface BulkRevokeDeps {
  pool: pg.Pool;
  /** The caller's client (null: an admin key, every client). */
  tenant: Tenant;
}

/**
 * Revokes every matching token that is not revoked yet, in one statement, and returns how many it revoked (tokens
 * already revoked keep their first revocation time and are not counted). At least one criterion is required, so that
 * an empty filter cannot revoke everything by accident.
 */
export async function revokeTokens(deps: BulkRevokeDeps, filter: BulkRevokeFilter): Promise<{ revokedCount: number }> {
  const issues = new Issues();
  if (filter.userId == null && filter.scope == null && filter.issuedBefore == null) {
    issues.add(['filter'], 'give at least one of userId, scope or issuedBefore');
  }
  if (filter.userId != null) checkString(issues, ['filter', 'userId'], filter.userId, { min: 1, max: MAX_USER_ID_LENGTH });
  if (filter.scope != null) checkString(issues, ['filter', 'scope'], filter.scope, { min: 1, max: MAX_SCOPE_LENGTH });
  issues.throwIfAny();

  const values: unknown[] = [];
  const where = ['revoked_at is null'];
  const param = (v: unknown) => `$${values.push(v)}`;
  if (deps.tenant !== null) where.push(`client_id = ${param(deps.tenant)}`);
  if (filter.userId != null) where.push(`user_id = ${param(filter.userId)}`);
  if (filter.scope != null) where.push(`scope = ${param(filter.scope)}`);
  if (filter.issuedBefore != null) where.push(`issued_at < ${param(filter.issuedBefore)}`);
  const { rows } = await deps.pool.query(
    `with revoked as (update request_token set revoked_at = now() where ${where.join(' and ')} returning 1)
     select count(*)::int as n from revoked`,
    values,
  );
  return { revokedCount: rows[0].n };
}
