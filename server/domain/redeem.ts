import { isIP } from 'node:net';
import type pg from 'pg';
import type { Config } from '../config.js';
import type { LoginMode } from '../database/entities/request-token.js';
import { Issues, TokenRejection, type RejectionCode } from './errors.js';
import type { JwtCodec } from './jwt.js';
import { parseHttpUrl, urlParts, type UrlParts } from './target-url.js';
import { findReplay, fingerprint, isKeyConflict, MAX_IDEMPOTENCY_KEY_LENGTH } from './idempotency.js';
import { checkString, MAX_USER_AGENT_LENGTH, MAX_USER_ID_LENGTH } from './validation.js';
import type { RedeemBatcher } from './redeem-batch.js';
import type { RefusalLog } from './refusal-log.js';
import { MAX_SCOPE_LENGTH, tokenColumns, tokenFields, tokenFromRow, type TokenRecord, type TokenRow } from './tokens.js';
import { tenantOf, type Caller, type Tenant } from './api-keys.js';
import { namedStatement } from './named-sql.js';
import { NO_TOKEN_ID } from '../database/entities/request-token-log.js';
import { queryPrepared } from '../database/prepared-query.js';
import { parseId } from './ids.js';
import { REDEMPTION_PARAMS, redeemableSql, SHARED_PARAMS, verdictCte, type CheckParams } from './redemption-rules.js';
import { storedClientIp } from './privacy.js';

export interface RedeemInput {
  jwt: string;
  scope: string;
  url?: string | null;
  userId?: string | null;
  clientIp?: string | null;
  userAgent?: string | null;
  /** A retry with the same key for the same token returns the original Redemption and consumes nothing more. */
  idempotencyKey?: string | null;
}

export interface Redemption {
  /** The log row of this redemption; recordResponseStatus takes it. */
  id: string;
  token: TokenRecord;
  loginMode: LoginMode;
  authenticateAs: string | null;
  data: Record<string, unknown> | null;
  usesRemaining: number;
}

export interface RedeemDeps {
  pool: pg.Pool;
  codec: JwtCodec;
  config: Pick<Config, 'clockToleranceSeconds' | 'clientIpStorage' | 'clientIpHashSalt'>;
  /** Only the caller's client's tokens redeem; another client's token is refused as TOKEN_NOT_FOUND. */
  caller: Caller;
  refusalLog: RefusalLog;
  /** Batches the success statement under load (server/domain/redeem-batch.ts); without it, one statement each. */
  redeemBatcher?: RedeemBatcher | null;
}

/** Far above any JWT we issue; the codec refuses anything over its own cap as malformed without decoding it. */
const MAX_JWT_INPUT = 64 * 1024;

/** A redemption as the statements that decide it take it (named parameters; see redemption-rules.ts). */
export type RedemptionValues = {
  tokenId: string;
  scope: string;
  host: string | null;
  path: string | null;
  params: Record<string, string[]>;
  userId: string | null;
  tenant: Tenant;
  /** The kid of the key that verified the JWT. */
  kid: string;
  /** Logged with the attempt. */
  clientIp: string | null;
  userAgent: string | null;
  /** CLOCK_TOLERANCE_SECONDS */
  tolerance: number;
  /** The idempotency key and the fingerprint of the request it came with (both null without a key). */
  key: string | null;
  fingerprint: string | null;
} & CheckParams;

/** What each redemption of a batch brings: the checks' parameters and what its log row records. */
export const PER_REDEMPTION_PARAMS = { ...REDEMPTION_PARAMS, clientIp: 'text', userAgent: 'text' } as const;

/**
 * The success path: one statement, one round trip. The conditional UPDATE is the atomic use counter (every check of
 * the rules is in its WHERE, and PostgreSQL re-checks them on the newest row version under concurrency), and the log
 * row is written in the same statement, so a counted use always has its log row. With `skipLocked`, a row locked by
 * another transaction is skipped (no row: the caller retries) rather than waited for.
 */
const redeemSql = ({ skipLocked }: { skipLocked: boolean }) => `with ${
  skipLocked ? 'locked as (select id from request_token where id = :tokenId for update skip locked), ' : ''
}used as (
    update request_token t set used_to_date = t.used_to_date + 1
    where t.id = :tokenId${skipLocked ? ' and t.id in (select id from locked)' : ''}
      and ${redeemableSql('t')}
    returning ${tokenFields('t')}
  ), log as (
    insert into request_token_log (token_id, user_id, client_ip, user_agent, client_id)
    select id, :userId, :clientIp, :userAgent, client_id from used
    returning id, timestamp
  ), keyed as (
    insert into request_token_idempotency (token_id, key, fingerprint, log_id, log_timestamp)
    select used.id, :key, :fingerprint, log.id, log.timestamp from used cross join log where :key is not null
  )
  select ${tokenColumns('used')}, log.id as log_id from used cross join log`;

const REDEEM_TYPES = { ...PER_REDEMPTION_PARAMS, ...SHARED_PARAMS, key: 'text', fingerprint: 'text' } as const;

export const REDEEM_SQL = namedStatement('redeem', redeemSql({ skipLocked: false }), REDEEM_TYPES);
/**
 * REDEEM_SQL for a redemption that runs alone on a batch connection (a batch of one): a row locked elsewhere is skipped
 * rather than waited for, as in a batch (server/domain/redeem-batch.ts).
 */
export const REDEEM_ALONE_SQL = namedStatement('redeem-alone', redeemSql({ skipLocked: true }), REDEEM_TYPES);

/** A token row after a use was counted, with the log row of that use. */
export type RedeemedRow = TokenRow & { log_id: string };

/**
 * The refusal path: the first failing check (the rules' order) is logged. Writes nothing when every check passes (a
 * concurrent change made the token redeemable again), so the caller retries the success path. On Citus the statement
 * runs as a function on the token's shard (server/domain/citus.ts), which answers a refusal that no stored token owns
 * with a null id instead of writing it: the caller then writes it with LOG_UNOWNED_REFUSAL_SQL (token id 0's shard).
 */
export const REFUSE_SQL = namedStatement(
  'refuse',
  `with ${verdictCte()}
  insert into request_token_log (token_id, error_code, user_id, client_ip, user_agent, client_id)
  select coalesce(id, ${NO_TOKEN_ID}), code, :userId, :clientIp, :userAgent, client_id from verdict where code is not null
  returning id, nullif(token_id, ${NO_TOKEN_ID}) as token_id, error_code`,
  { ...PER_REDEMPTION_PARAMS, ...SHARED_PARAMS },
);

/** A refusal that no stored token owns, logged under token id 0 (one shard on Citus): see REFUSE_SQL. */
export const LOG_UNOWNED_REFUSAL_SQL = namedStatement(
  'log-unowned-refusal',
  `insert into request_token_log (token_id, error_code, user_id, client_ip, user_agent, client_id)
  values (${NO_TOKEN_ID}, :code, :userId, :clientIp, :userAgent, :tenant) returning id`,
  { code: 'text', userId: 'text', clientIp: 'text', userAgent: 'text', tenant: 'bigint' },
);

export function validateRedeemInput(input: RedeemInput): { requested: UrlParts | null; userAgent: string | null } {
  const issues = new Issues();
  checkString(issues, ['input', 'jwt'], input.jwt, { min: 1, max: MAX_JWT_INPUT });
  checkString(issues, ['input', 'scope'], input.scope, { min: 1, max: MAX_SCOPE_LENGTH });
  if (input.userId != null) checkString(issues, ['input', 'userId'], input.userId, { min: 1, max: MAX_USER_ID_LENGTH });
  let requested: UrlParts | null = null;
  if (input.url != null) {
    const parsed = parseHttpUrl(input.url);
    if (typeof parsed === 'string') issues.add(['input', 'url'], parsed);
    else requested = urlParts(parsed);
  }
  if (input.idempotencyKey != null) {
    checkString(issues, ['input', 'idempotencyKey'], input.idempotencyKey, { min: 1, max: MAX_IDEMPOTENCY_KEY_LENGTH });
  }
  // Zone ids (fe80::1%eth0) pass isIP but are no client address, and may exceed the column.
  if (input.clientIp != null && (isIP(input.clientIp) === 0 || input.clientIp.length > 45 || input.clientIp.includes('%'))) {
    issues.add(['input', 'clientIp'], 'must be an IP address');
  }
  let userAgent: string | null = null;
  if (input.userAgent != null) {
    checkString(issues, ['input', 'userAgent'], input.userAgent, { max: 64 * 1024 });
    // Long user agents are cut rather than refused: the agent is the browser's, not the client application's.
    userAgent = input.userAgent.slice(0, MAX_USER_AGENT_LENGTH);
  }
  issues.throwIfAny();
  return { requested, userAgent };
}

/**
 * Redeems a token: checks the JWT, then counts one use and logs it atomically. A refusal is returned as a
 * TokenRejection: the attempt is logged and nothing is consumed. Bad input throws ValidationError and changes nothing.
 */
export async function redeemToken(deps: RedeemDeps, input: RedeemInput): Promise<Redemption | TokenRejection> {
  const { requested, userAgent } = validateRedeemInput(input);
  const userId = input.userId ?? null;
  const clientIp = input.clientIp == null ? null : storedClientIp(input.clientIp, deps.config);
  const tenant = tenantOf(deps.caller);
  // A known key answers synchronously: no turn of the microtask queue before the statement.
  const checked = deps.codec.verify(input.jwt);
  const verified = checked instanceof Promise ? await checked : checked;
  if (!verified.ok) {
    // No database work for garbage: the attempt is logged by the batched writer, off the request path.
    const logId = deps.refusalLog.record({ code: verified.code, userId, clientIp, userAgent, clientId: tenant });
    return new TokenRejection(verified.code, null, logId);
  }

  const tokenId = parseId(verified.claims.jti) ?? '0';
  const key = input.idempotencyKey ?? null;
  const expected =
    key === null ? null : fingerprint({ scope: input.scope, url: input.url ?? null, userId, clientIp, userAgent });
  // No look-up before redeeming: a first attempt (the common case) stays one round trip. A retry's statement fails on
  // the key's primary key and is rolled back whole, use included; then the original is looked up.
  const replay = async () => {
    const row = key === null ? null : await findReplay(deps.pool, tokenId, key, expected!, tenant, deps.config.clockToleranceSeconds);
    return row && redemptionFromRow(row, row.log_id);
  };
  const values: RedemptionValues = {
    tokenId,
    scope: input.scope,
    host: requested?.host ?? null,
    path: requested?.path ?? null,
    params: requested?.params ?? {},
    userId,
    tenant,
    kid: verified.kid,
    clientIp,
    userAgent,
    tolerance: deps.config.clockToleranceSeconds,
    key,
    fingerprint: expected,
  };
  for (let attempt = 0; attempt < 3; attempt++) {
    let used: RedeemedRow | null;
    try {
      used =
        // The first attempt may share a statement with concurrent redemptions; a retry (the token was busy) runs
        // alone and waits its turn on the row.
        attempt === 0 && key === null && deps.redeemBatcher
          ? await deps.redeemBatcher.consume(values)
          : ((
              await queryPrepared<RedeemedRow>(deps.pool, REDEEM_SQL.bind(values))
            ).rows[0] ?? null);
    } catch (error) {
      // This key already redeemed this token (a retry, or a concurrent twin that committed first): this statement, use
      // included, was rolled back.
      if (isKeyConflict(error)) {
        const original = await replay();
        if (original) return original;
        continue; // released in between: the key is free again
      }
      throw error;
    }
    if (used) return redemptionFromRow(used, used.log_id);
    // The use may have gone to a concurrent redemption with this very key: that one is our answer, not a refusal.
    const original = await replay();
    if (original) return original;
    const refused = await queryPrepared<{ id: string | null; token_id: string | null; error_code: RejectionCode }>(
      deps.pool,
      REFUSE_SQL.bind(values),
    );
    if (refused.rows[0]) {
      const { id, token_id, error_code } = refused.rows[0];
      // Not written (Citus: no stored token owns it, so its row is not on this token's shard): written now, on the
      // shard of token id 0.
      const logId =
        id ??
        (
          await queryPrepared<{ id: string }>(
            deps.pool,
            LOG_UNOWNED_REFUSAL_SQL.bind({ code: error_code, userId, clientIp, userAgent, tenant }),
          )
        ).rows[0].id;
      return new TokenRejection(error_code, token_id === null ? null : String(token_id), String(logId));
    }
  }
  throw new Error(`token ${tokenId} kept changing under redemption`);
}

function redemptionFromRow(row: TokenRow, logId: string | number): Redemption {
  const token = tokenFromRow(row);
  return {
    id: String(logId),
    token,
    loginMode: token.loginMode,
    authenticateAs: token.loginMode === 'NONE' ? null : token.userId,
    data: token.data,
    usesRemaining: token.maxUses - token.usedToDate,
  };
}
