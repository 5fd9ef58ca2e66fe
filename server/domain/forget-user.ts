import { RequestToken } from '../database/entities/request-token.js';
import { RequestTokenLog } from '../database/entities/request-token-log.js';
import { raw } from '@mikro-orm/core';
import { requestEm, type TenantDeps } from '../database/tenant.js';
import { Issues } from './errors.js';
import { checkString, MAX_USER_ID_LENGTH } from './validation.js';

export interface Forgotten {
  revokedTokens: number;
  anonymisedLogs: number;
}

/**
 * Revokes a user's tokens and anonymises their log rows while keeping the counts (erasure requests), in one
 * transaction, within the caller's tenant (the filter confines both statements). The log rows go first: those of the
 * user's tokens are found through the tokens' user id, which the second statement then clears. Rows stay, so counts
 * stay right.
 */
export async function forgetUser(deps: TenantDeps, userId: string): Promise<Forgotten> {
  const issues = new Issues();
  checkString(issues, ['userId'], userId, { min: 1, max: MAX_USER_ID_LENGTH });
  issues.throwIfAny();
  return requestEm(deps).transactional(async (em) => {
    const anonymisedLogs = await em.nativeUpdate(
      RequestTokenLog,
      { $or: [{ userId }, { token: { userId } }] },
      { userId: null, clientIp: null, userAgent: null },
    );
    const revokedTokens = await em.nativeUpdate(
      RequestToken,
      { userId },
      // least(), not coalesce(): Citus refuses now() inside COALESCE in an UPDATE (the stored time is never in the future).
      { revokedAt: raw('least(revoked_at, now())'), userId: null, data: null },
    );
    return { revokedTokens, anonymisedLogs };
  });
}
