import type pg from 'pg';
import type { Config } from '../config.js';
import { Issues, NotFoundError } from './errors.js';
import type { LoginMode, TokenStatus } from '../database/entities/request-token.js';
import { LOGIN_MODES, TOKEN_STATUSES } from '../database/entities/request-token.js';
import { modeClaim, type JwtCodec, type TokenClaims } from './jwt.js';
import { parseHttpUrl, tokeniseUrl, urlParts } from './target-url.js';
import { keysetPage, pageWindow, type Page, type PageArgs } from './paging.js';
import { checkJsonValue, checkString, MAX_USER_ID_LENGTH } from './validation.js';
import { DEFAULT_CLIENT_ID } from '../database/entities/api-client.js';
import { tenantOf, type Caller, type Tenant } from './api-keys.js';
import { isDatabaseId } from './ids.js';

/** A token as the API shows it; the shape of a request_token row. */
export interface TokenRecord {
  id: string;
  scope: string;
  targetUrl: string | null;
  userId: string | null;
  loginMode: LoginMode;
  data: Record<string, unknown> | null;
  maxUses: number;
  usedToDate: number;
  issuedAt: Date;
  notBefore: Date | null;
  expiresAt: Date | null;
  revokedAt: Date | null;
  /** The tenant owning the token. */
  clientId: string;
  /** The signing key of its JWT; null for tokens issued before key rotation existed (no kid in their header). */
  kid: string | null;
  /** Derived on the database clock when the row was read. */
  status: TokenStatus;
}

export function tokenFromRow(row: Record<string, any>): TokenRecord {
  return {
    id: String(row.id),
    scope: row.scope,
    targetUrl: row.target_url,
    userId: row.user_id,
    loginMode: row.login_mode,
    data: row.data,
    maxUses: row.max_uses,
    usedToDate: row.used_to_date,
    issuedAt: row.issued_at,
    notBefore: row.not_before,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    clientId: String(row.client_id),
    kid: row.kid ?? null,
    status: row.status,
  };
}

/** SQL for a token's derived status, in the order redemption checks it, on the database clock. */
export const STATUS_SQL = `case
  when revoked_at is not null then 'REVOKED'
  when used_to_date >= max_uses then 'EXHAUSTED'
  when expires_at is not null and expires_at <= now() then 'EXPIRED'
  when not_before is not null and not_before > now() then 'NOT_YET_VALID'
  else 'ACTIVE' end`;

export const TOKEN_COLUMNS = `id, scope, target_url, user_id, login_mode, data, max_uses, used_to_date, issued_at,
  not_before, expires_at, revoked_at, client_id, kid, ${STATUS_SQL} as status`;

export interface TokenDeps {
  pool: pg.Pool;
  codec: JwtCodec;
  config: Pick<Config, 'defaultMaxUses' | 'sessionTokenExpiryMinutes'>;
  /** Tokens are issued into the caller's client (admin keys: `clientId` of the input, else the default client). */
  caller: Caller;
}

export interface IssueInput {
  scope: string;
  targetUrl?: string | null;
  userId?: string | null;
  loginMode?: LoginMode | null;
  maxUses?: number | null;
  expiresAt?: Date | null;
  notBefore?: Date | null;
  data?: unknown;
  /** Admin keys only: the client to issue into. */
  clientId?: string | null;
}

export interface Issued {
  token: TokenRecord;
  jwt: string;
  url: string | null;
}

export const MAX_SCOPE_LENGTH = 100;
export const MAX_DATA_BYTES = 16 * 1024;
const MAX_INT = 2_147_483_647;

export function jwtClaims(token: TokenRecord): TokenClaims {
  const seconds = (d: Date) => Math.floor(d.getTime() / 1000);
  const claims: TokenClaims = {
    jti: token.id,
    sub: token.scope,
    mod: modeClaim(token.loginMode),
    max: token.maxUses,
    iat: seconds(token.issuedAt),
  };
  if (token.userId !== null) claims.aud = token.userId;
  if (token.expiresAt) claims.exp = seconds(token.expiresAt);
  if (token.notBefore) claims.nbf = seconds(token.notBefore);
  return claims;
}

/**
 * HS256 and EdDSA are deterministic, so the JWT of a stored token can be signed again whenever it is asked for, with the
 * key it was issued with (ES256 gives another, equally valid signature).
 */
export const tokenJwt = (codec: JwtCodec, token: TokenRecord) => codec.sign(jwtClaims(token), token.kid);

// The checks against the present (expiry in the future, not-before before a session's default expiry) are made here, on
// the database clock, like every other time decision: servers whose clocks differ still agree. No row: a check failed.
export const ISSUE_SQL = `insert into request_token
  (scope, target_url, target_host, target_path, target_params, user_id, login_mode, data, max_uses, not_before, expires_at,
   client_id, kid)
  select $1::text, $2::text, $3::text, $4::text, $5::jsonb, $6::text, $7::text, $8::jsonb, $9::int, $10::timestamptz, e.expiry,
    $13::bigint, $14::text
  from (select coalesce($11::timestamptz, case when $7 = 'SESSION' then now() + make_interval(mins => $12) end) as expiry) e
  where (e.expiry is null or e.expiry > now()) and ($10 is null or e.expiry is null or $10 < e.expiry)
  returning ${TOKEN_COLUMNS}`;

/**
 * Validates an issue request; every offending field is listed. With `now` null the checks against the present are
 * left out (issueToken leaves them to the database clock).
 */
export function validateIssueInput(input: IssueInput, now: Date | null, path: string[] = ['input']): Issues {
  const issues = new Issues();
  const at = (field: string) => [...path, field];
  checkString(issues, at('scope'), input.scope, { min: 1, max: MAX_SCOPE_LENGTH });
  if (input.userId != null) checkString(issues, at('userId'), input.userId, { min: 1, max: MAX_USER_ID_LENGTH });
  const mode = input.loginMode ?? 'NONE';
  if (!LOGIN_MODES.includes(mode)) issues.add(at('loginMode'), `must be one of ${LOGIN_MODES.join(', ')}`);
  if (mode !== 'NONE' && input.userId == null) issues.add(at('userId'), `is required for loginMode ${mode}`);
  if (input.maxUses != null && (!Number.isInteger(input.maxUses) || input.maxUses < 1 || input.maxUses > MAX_INT)) {
    issues.add(at('maxUses'), 'must be a whole number of at least 1');
  }
  if (now && input.expiresAt && input.expiresAt <= now) issues.add(at('expiresAt'), 'must be in the future');
  if (input.notBefore && input.expiresAt && input.notBefore >= input.expiresAt) {
    issues.add(at('notBefore'), 'must be before expiresAt');
  }
  if (input.targetUrl != null) {
    const parsed = parseHttpUrl(input.targetUrl);
    if (typeof parsed === 'string') issues.add(at('targetUrl'), parsed);
  }
  if (input.data != null) {
    if (typeof input.data !== 'object' || Array.isArray(input.data)) {
      issues.add(at('data'), 'must be a JSON object');
    } else {
      // Depth first: it stops early, before JSON.stringify walks a hostile nesting.
      const before = issues.list.length;
      checkJsonValue(issues, at('data'), input.data);
      if (issues.list.length === before && Buffer.byteLength(JSON.stringify(input.data), 'utf8') > MAX_DATA_BYTES) {
        issues.add(at('data'), `must be at most ${MAX_DATA_BYTES} bytes as JSON`);
      }
    }
  }
  return issues;
}

export function checkAgainstNow(
  issues: Issues,
  input: IssueInput,
  now: Date,
  sessionMinutes: number,
  path: string[] = ['input'],
): void {
  if ((input.loginMode ?? 'NONE') === 'SESSION' && !input.expiresAt && input.notBefore) {
    const defaultExpiry = new Date(now.getTime() + sessionMinutes * 60_000);
    if (input.notBefore >= defaultExpiry) {
      issues.add([...path, 'notBefore'], 'must be before the session expiry (set expiresAt)');
    }
  }
}

/**
 * Issues a token: validates, stores it with one INSERT … RETURNING, and signs its JWT. Every decision that depends on
 * the present uses the database clock, never this process's.
 */
export async function issueToken(deps: TokenDeps, input: IssueInput): Promise<Issued> {
  const issues = validateIssueInput(input, null);
  const mode = input.loginMode ?? 'NONE';
  const tenant = tenantOf(deps.caller);
  let clientId = tenant ?? DEFAULT_CLIENT_ID;
  if (input.clientId != null) {
    // Another tenant's client id is refused exactly like one that does not exist.
    const known =
      isDatabaseId(input.clientId) &&
      (tenant === null
        ? (await deps.pool.query('select 1 from api_client where id = $1', [input.clientId])).rowCount === 1
        : input.clientId === tenant);
    if (known) clientId = input.clientId;
    else issues.add(['input', 'clientId'], 'no such client');
  }
  issues.throwIfAny();

  const target = input.targetUrl != null ? urlParts(parseHttpUrl(input.targetUrl) as URL) : null;
  const { rows } = await deps.pool.query({
    name: 'issue-token',
    text: ISSUE_SQL,
    values: [
      input.scope,
      input.targetUrl ?? null,
      target?.host ?? null,
      target?.path ?? null,
      target ? JSON.stringify(target.params) : null,
      input.userId ?? null,
      mode,
      input.data == null ? null : JSON.stringify(input.data),
      input.maxUses ?? deps.config.defaultMaxUses,
      input.notBefore ?? null,
      input.expiresAt ?? null,
      deps.config.sessionTokenExpiryMinutes,
      clientId,
      deps.codec.activeKid(),
    ],
  });
  if (!rows[0]) {
    // Rare: say which check failed, judged on the database clock.
    const { rows: clock } = await deps.pool.query('select now() as now');
    const issues = validateIssueInput(input, clock[0].now);
    checkAgainstNow(issues, input, clock[0].now, deps.config.sessionTokenExpiryMinutes);
    if (issues.list.length === 0) issues.add(['input', 'expiresAt'], 'must be in the future');
    issues.throwIfAny();
  }
  const token = tokenFromRow(rows[0]);
  const jwt = await tokenJwt(deps.codec, token);
  return { token, jwt, url: token.targetUrl ? tokeniseUrl(token.targetUrl, jwt) : null };
}

/** Another tenant's token reads as missing. */
export async function getToken(pool: pg.Pool, id: string, tenant: Tenant): Promise<TokenRecord | null> {
  if (!isDatabaseId(id)) return null;
  const { rows } = await pool.query({
    name: 'get-token',
    text: `select ${TOKEN_COLUMNS} from request_token where id = $1 and ($2::bigint is null or client_id = $2::bigint)`,
    values: [id, tenant],
  });
  return rows[0] ? tokenFromRow(rows[0]) : null;
}

/** Several tokens by id in one query (the dashboard's log pages name the same few tokens many times). */
export async function getTokens(pool: pg.Pool, ids: string[], tenant: Tenant): Promise<Map<string, TokenRecord>> {
  const valid = ids.filter(isDatabaseId);
  const found = new Map<string, TokenRecord>();
  if (valid.length === 0) return found;
  const { rows } = await pool.query({
    name: 'get-tokens',
    text: `select ${TOKEN_COLUMNS} from request_token
      where id = any($1::bigint[]) and ($2::bigint is null or client_id = $2::bigint)`,
    values: [valid, tenant],
  });
  for (const row of rows) found.set(String(row.id), tokenFromRow(row));
  return found;
}

/** Revokes at once; revoking a revoked token keeps its first revocation time. */
export async function revokeToken(pool: pg.Pool, id: string, tenant: Tenant): Promise<TokenRecord> {
  if (!isDatabaseId(id)) throw new NotFoundError('Token');
  const { rows } = await pool.query({
    name: 'revoke-token',
    text: `update request_token set revoked_at = coalesce(revoked_at, now())
      where id = $1 and ($2::bigint is null or client_id = $2::bigint) returning ${TOKEN_COLUMNS}`,
    values: [id, tenant],
  });
  if (!rows[0]) throw new NotFoundError('Token');
  return tokenFromRow(rows[0]);
}

export interface TokenFilter {
  scope?: string | null;
  userId?: string | null;
  status?: TokenStatus | null;
}

export async function listTokens(
  pool: pg.Pool,
  filter: TokenFilter,
  args: PageArgs,
  tenant: Tenant,
): Promise<Page<TokenRecord>> {
  const issues = new Issues();
  const { limit, beforeId } = pageWindow(args, issues);
  if (filter.status != null && !TOKEN_STATUSES.includes(filter.status)) issues.add(['filter', 'status'], 'unknown');
  issues.throwIfAny();

  const where: string[] = [];
  const values: unknown[] = [];
  const param = (v: unknown) => `$${values.push(v)}`;
  if (tenant !== null) where.push(`client_id = ${param(tenant)}`);
  if (filter.scope != null) where.push(`scope = ${param(filter.scope)}`);
  if (filter.userId != null) where.push(`user_id = ${param(filter.userId)}`);
  if (filter.status != null) where.push(`(${STATUS_SQL}) = ${param(filter.status)}`);
  return keysetPage(pool, {
    from: 'request_token',
    columns: TOKEN_COLUMNS,
    idColumn: 'id',
    where,
    values,
    limit,
    beforeId,
    map: tokenFromRow,
  });
}
