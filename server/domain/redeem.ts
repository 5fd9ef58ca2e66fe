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
import { MAX_SCOPE_LENGTH, TOKEN_COLUMNS, tokenFromRow, type TokenRecord } from './tokens.js';
import { tenantOf, type Caller } from './api-keys.js';
import { DEFAULT_KID } from './signing-keys.js';
import { storedClientIp } from './privacy.js';
import { isDatabaseId } from './ids.js';

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

/** SQL expressions of a redemption's values, for `redeemableSql`. */
export interface RedemptionValues {
  scope: string;
  host: string;
  path: string;
  /** jsonb */
  params: string;
  /** text, may be null */
  userId: string;
  /** seconds */
  tolerance: string;
  /** bigint, may be null (an admin key: every client) */
  tenant: string;
  /** text: the kid of the key that verified the JWT ('default' for a JWT without one) */
  kid: string;
}

/**
 * Every query parameter a target binds carries exactly the target's values in the requested URL, in order: a repeated
 * parameter (`?list=daily&list=weekly` for `?list=weekly`) does not match, since the application may read either.
 * Parameters the target does not name are free. Its reference is urlMatches (target-url.ts).
 */
const boundParamsSql = (target: string, requested: string) =>
  `not exists (select from jsonb_each(${target}) bound where ${requested} -> bound.key is distinct from bound.value)`;

/**
 * When a redemption consumes a use: the token is in scope, not revoked, inside its time window (with the clock
 * tolerance), bound to the requested URL if bound at all, issued to this user if to anyone, has uses left and belongs
 * to the caller's client, and the JWT was signed by the key the token was issued with (another key's signature over the
 * same claims is no proof: retiring a key must kill its tokens). Over request_token's columns (prefixed by `table`); every statement that consumes a use
 * takes its conditions from here (REDEEM_SQL, and the micro-batch statements of redeem-batch.ts).
 */
export const redeemableSql = (v: RedemptionValues, table = '') => {
  const c = table ? `${table}.` : '';
  return `${c}scope = ${v.scope} and ${c}revoked_at is null
      and (${c}not_before is null or ${c}not_before <= now() + make_interval(secs => ${v.tolerance}))
      and (${c}expires_at is null or ${c}expires_at > now() - make_interval(secs => ${v.tolerance}))
      and (${c}target_host is null
        or (${c}target_host = ${v.host} and ${c}target_path = ${v.path} and ${boundParamsSql(`${c}target_params`, v.params)}))
      and (${v.userId} is null or ${c}user_id is null or ${c}user_id = ${v.userId})
      and ${c}used_to_date < ${c}max_uses
      and (${v.tenant} is null or ${c}client_id = ${v.tenant})
      and coalesce(${c}kid, '${DEFAULT_KID}') = ${v.kid}`;
};

/**
 * The success path: one statement, one round trip. The conditional UPDATE is the atomic use counter (PostgreSQL
 * re-checks `used_to_date < max_uses` on the newest row version under concurrency), and the log row is written in the
 * same statement, so a counted use always has its log row. With `skipLocked`, a row locked by another transaction is
 * skipped (no row: the caller retries) rather than waited for.
 */
export const redeemSql = ({ skipLocked }: { skipLocked: boolean }) => `with ${
  skipLocked ? 'locked as (select id from request_token where id = $1 for update skip locked), ' : ''
}used as (
    update request_token set used_to_date = used_to_date + 1
    where id = $1${skipLocked ? ' and id in (select id from locked)' : ''} and ${redeemableSql({
      scope: '$2',
      host: '$3',
      path: '$4',
      params: '$5::jsonb',
      userId: '$6::text',
      tolerance: '$9',
      tenant: '$12::bigint',
      kid: '$13::text',
    })}
    returning ${TOKEN_COLUMNS}
  ), log as (
    insert into request_token_log (token_id, user_id, client_ip, user_agent, client_id)
    select id, $6, $7, $8, client_id from used
    returning id
  ), keyed as (
    insert into request_token_idempotency (token_id, key, fingerprint, log_id)
    select used.id, $10::text, $11::text, log.id from used cross join log where $10::text is not null
  )
  select used.*, log.id as log_id from used cross join log`;

export const REDEEM_SQL = redeemSql({ skipLocked: false });

// The refusal path: find the first failing check, in the documented order, and log it. Writes nothing when every
// check passes (a concurrent change made the token redeemable again), so the caller retries the success path.
export const VERDICT_CTE = `verdict as (
    select t.id, coalesce(t.client_id, $10::bigint) as client_id, case
      when t.id is null then 'TOKEN_NOT_FOUND'
      when coalesce(t.kid, '${DEFAULT_KID}') <> $11::text then 'TOKEN_SIGNATURE_INVALID'
      when t.revoked_at is not null then 'TOKEN_REVOKED'
      when t.not_before > now() + make_interval(secs => $9) then 'TOKEN_NOT_YET_VALID'
      when t.expires_at <= now() - make_interval(secs => $9) then 'TOKEN_EXPIRED'
      when t.scope <> $2 then 'SCOPE_MISMATCH'
      when t.target_host is not null and not coalesce(
        t.target_host = $3 and t.target_path = $4 and ${boundParamsSql('t.target_params', '$5::jsonb')}, false) then 'TARGET_URL_MISMATCH'
      when $6::text is not null and t.user_id is not null and t.user_id <> $6 then 'AUDIENCE_MISMATCH'
      when t.used_to_date >= t.max_uses then 'MAX_USES_EXCEEDED'
    end as code
    from (select 1) as one
    left join request_token t on t.id = $1 and ($10::bigint is null or t.client_id = $10::bigint)
  )`;
export const REFUSE_SQL = `with ${VERDICT_CTE}
  insert into request_token_log (token_id, error_code, user_id, client_ip, user_agent, client_id)
  select id, code, $6, $7, $8, client_id from verdict where code is not null
  returning id, token_id, error_code`;

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

  const verified = await deps.codec.verify(input.jwt);
  if (!verified.ok) {
    // No database work for garbage: the attempt is logged by the batched writer, off the request path.
    const logId = deps.refusalLog.record({ code: verified.code, userId, clientIp, userAgent, clientId: tenant });
    return new TokenRejection(verified.code, null, logId);
  }

  const tokenId = isDatabaseId(verified.claims.jti) ? verified.claims.jti : '0';
  const key = input.idempotencyKey ?? null;
  const expected =
    key === null ? null : fingerprint({ scope: input.scope, url: input.url ?? null, userId, clientIp, userAgent });
  // No look-up before redeeming: a first attempt (the common case) stays one round trip. A retry's statement fails on
  // the key's primary key and is rolled back whole, use included; then the original is looked up.
  const replay = async () => {
    const row = key === null ? null : await findReplay(deps.pool, tokenId, key, expected!, tenant);
    return row && redemptionFromRow(row, row.log_id);
  };
  const values = [
    tokenId,
    input.scope,
    requested?.host ?? null,
    requested?.path ?? null,
    JSON.stringify(requested?.params ?? {}),
    userId,
    clientIp,
    userAgent,
    deps.config.clockToleranceSeconds,
    key,
    expected,
    tenant,
    verified.kid,
  ];
  for (let attempt = 0; attempt < 3; attempt++) {
    let used: Record<string, any> | null;
    try {
      used =
        // The first attempt may share a statement with concurrent redemptions; a retry (the token was busy) runs
        // alone and waits its turn on the row.
        attempt === 0 && key === null && deps.redeemBatcher
          ? await deps.redeemBatcher.consume(values)
          : ((await deps.pool.query({ name: 'redeem', text: REDEEM_SQL, values })).rows[0] ?? null);
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
    const refused = await deps.pool.query({ name: 'refuse', text: REFUSE_SQL, values: [...values.slice(0, 9), tenant, verified.kid] });
    if (refused.rows[0]) {
      const { id, token_id, error_code } = refused.rows[0];
      return new TokenRejection(error_code as RejectionCode, token_id === null ? null : String(token_id), String(id));
    }
  }
  throw new Error(`token ${tokenId} kept changing under redemption`);
}

function redemptionFromRow(row: Record<string, any>, logId: unknown): Redemption {
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
