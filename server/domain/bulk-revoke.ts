import { raw, type FilterQuery } from '@mikro-orm/core';
import { RequestToken } from '../database/entities/request-token.js';
import { requestEm, tenantQueryBuilder, type TenantDeps } from '../database/tenant.js';
import { Issues } from './errors.js';
import { checkString, MAX_USER_ID_LENGTH } from './validation.js';
import { MAX_SCOPE_LENGTH } from './tokens.js';

export interface BulkRevokeFilter {
  userId?: string | null;
  scope?: string | null;
  /** Only tokens issued strictly before this instant. */
  issuedBefore?: Date | null;
}

/** The caller's client is the request's (null: an admin key, every client). */
export type BulkRevokeDeps = TenantDeps;

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

  const { affectedRows } = await revokeTokensStatement(deps, filter).execute('run');
  return { revokedCount: affectedRows };
}

/**
 * The one UPDATE behind revokeTokens, confined to the caller's tenant; tokens already revoked keep their first time.
 * Exported so that a test can EXPLAIN exactly this statement.
 */
export function revokeTokensStatement(deps: BulkRevokeDeps, filter: BulkRevokeFilter) {
  const where: FilterQuery<RequestToken> = { revokedAt: null };
  if (filter.userId != null) where.userId = filter.userId;
  if (filter.scope != null) where.scope = filter.scope;
  if (filter.issuedBefore != null) where.issuedAt = { $lt: filter.issuedBefore };
  return tenantQueryBuilder(requestEm(deps), RequestToken, 't', { revokedAt: raw('now()') }).andWhere(where);
}
