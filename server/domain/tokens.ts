import type pg from 'pg';
import { raw } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Config } from '../config.js';
import { Issues, NotFoundError } from './errors.js';
import { LOGIN_MODES, RequestToken, TOKEN_STATUSES, type LoginMode, type TokenStatus } from '../database/entities/request-token.js';
import { requestEm, tenantQueryBuilder } from '../database/tenant.js';
import { runListing, type ListingDeps } from './listing-statements.js';
import { columnList, columnName, type RowOf } from '../database/rows.js';
import { namedStatement } from './named-sql.js';
import type { IssueBatcher } from './issue-batch.js';
import { statusSql } from './redemption-rules.js';
import { parseId, parseIds } from './ids.js';
import { modeClaim, type JwtCodec, type TokenClaims } from './jwt.js';
import { parseHttpUrl, tokeniseUrl, urlParts } from './target-url.js';
import { keysetPage, pageWindow, type Page, type PageArgs } from './paging.js';
import { countTokensFromRollups } from './log-counts.js';
import { checkJsonValue, checkString, MAX_USER_ID_LENGTH } from './validation.js';
import { DEFAULT_CLIENT_ID } from '../database/entities/api-client.js';
import { queryPrepared } from '../database/prepared-query.js';
import { tenantOf, type Caller } from './api-keys.js';

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

/** The token's properties a TokenRecord shows, read by every hand-written statement that returns tokens. */
export const TOKEN_ROW_FIELDS = [
  'id', 'scope', 'targetUrl', 'userId', 'loginMode', 'data', 'maxUses', 'usedToDate', 'issuedAt', 'notBefore',
  'expiresAt', 'revokedAt',
] as const satisfies readonly (keyof RequestToken & string)[];

/** A token row as `tokenColumns` selects it. */
export type TokenRow = RowOf<RequestToken, (typeof TOKEN_ROW_FIELDS)[number]> & {
  // The tenant and the signing key are not on the entity yet (server/database/entities/request-token.ts).
  client_id: string | number;
  kid: string | null;
  status: TokenStatus;
};

/**
 * The select list of a token over `t`'s columns, its status included (derived from the redemption rules, with the
 * clock tolerance: `tolerance` is the SQL for it, by default the named placeholder `:tolerance`).
 */
export const tokenColumns = (t = 'request_token', tolerance = ':tolerance') =>
  `${tokenFields(t)}, ${statusSql(t, tolerance)} as status`;

/**
 * The stored columns of a token over `t`, without its status: what a statement that writes tokens returns, its status
 * then derived over the returned row (`tokenColumns` on the CTE). Citus refuses clock functions such as now() in a
 * RETURNING clause, and a status read after the write is the same on plain PostgreSQL (now() is the statement's).
 */
export const tokenFields = (t = 'request_token') => `${columnList(t, TOKEN_ROW_FIELDS)}, ${t}.client_id, ${t}.kid`;

/**
 * A token's columns under prefixed names (`t_id`, `t_scope`, …, `t_status`), to read it in another table's query
 * (a page of logs reads each row's token in the same statement); `tokenFromPrefixedRow` reads them back.
 */
export const prefixedTokenColumns = (t: string, tolerance: string, prefix = 't_') =>
  [
    ...[...TOKEN_ROW_FIELDS.map(columnName), 'client_id', 'kid'].map((c) => `${t}.${c} as ${prefix}${c}`),
    `${statusSql(t, tolerance)} as ${prefix}status`,
  ].join(', ');

/**
 * How much of each row's token a page of logs reads in its statement (server/domain/logs.ts): `none` (nothing: no
 * join), `brief` (its id and scope, what the SDK's RequestTokenLogs document shows: two columns rather than sixteen,
 * which the client parses on every row), or `full` (the whole TokenRecord). A few fixed projections rather than one per
 * GraphQL selection, so that the statements cached per shape (listing-statements.ts) stay few.
 */
export type TokenProjection = 'none' | 'brief' | 'full';

/** The part of a token the `brief` projection reads. */
export type TokenBrief = Pick<TokenRecord, 'id' | 'scope'>;

/** The brief's columns under prefixed names, as `prefixedTokenColumns` names them. */
export const prefixedBriefColumns = (t: string, prefix = 't_') => `${t}.id as ${prefix}id, ${t}.scope as ${prefix}scope`;

/** The token of `prefixedBriefColumns` in `row`, or null when the row had none (an outer join found no token). */
export function briefFromPrefixedRow(row: Record<string, unknown>, prefix = 't_'): TokenBrief | null {
  const id = row[`${prefix}id`];
  return id == null ? null : { id: String(id), scope: row[`${prefix}scope`] as string };
}

/** A token row's column names (as `tokenColumns` selects them), and each under its prefix: worked out once. */
const TOKEN_ROW_COLUMNS = [...TOKEN_ROW_FIELDS.map(columnName), 'client_id', 'kid', 'status'];
const prefixedColumns = new Map<string, [string, string][]>();

/** The token of `prefixedTokenColumns` in `row`, or null when the row had none (an outer join found no token). */
export function tokenFromPrefixedRow(row: Record<string, unknown>, prefix = 't_'): TokenRecord | null {
  if (row[`${prefix}id`] == null) return null;
  let columns = prefixedColumns.get(prefix);
  if (!columns) prefixedColumns.set(prefix, (columns = TOKEN_ROW_COLUMNS.map((c) => [c, `${prefix}${c}`])));
  const own: Record<string, unknown> = {};
  for (const [c, prefixed] of columns) own[c] = row[prefixed];
  return tokenFromRow(own as TokenRow);
}

export function tokenFromRow(row: TokenRow): TokenRecord {
  return {
    id: String(row.id),
    scope: row.scope,
    targetUrl: row.target_url ?? null,
    userId: row.user_id ?? null,
    loginMode: row.login_mode,
    data: row.data ?? null,
    maxUses: row.max_uses,
    usedToDate: row.used_to_date,
    issuedAt: row.issued_at,
    notBefore: row.not_before ?? null,
    expiresAt: row.expires_at ?? null,
    revokedAt: row.revoked_at ?? null,
    clientId: String(row.client_id),
    kid: row.kid ?? null,
    status: row.status,
  };
}

export interface TokenDeps {
  pool: pg.Pool;
  codec: JwtCodec;
  config: Pick<Config, 'defaultMaxUses' | 'sessionTokenExpiryMinutes' | 'clockToleranceSeconds'>;
  /** Tokens are issued into the caller's client (admin keys: `clientId` of the input, else the default client). */
  caller: Caller;
  /** Shares INSERTs between concurrent issues under load (issue-batch.ts); absent or null: one statement each. */
  issueBatcher?: IssueBatcher | null;
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

/** ISSUE_SQL's parameters and their types (issue-batch.ts stores several issues' worth with one statement). */
export const ISSUE_PARAMS = {
  scope: 'text', targetUrl: 'text', host: 'text', path: 'text', params: 'jsonb', userId: 'text', loginMode: 'text',
  data: 'jsonb', maxUses: 'int', notBefore: 'timestamptz', expiresAt: 'timestamptz', sessionMinutes: 'int',
  clientId: 'bigint', kid: 'text', tolerance: 'int',
} as const;

// The checks against the present (expiry in the future, not-before before a session's default expiry) are made here, on
// the database clock, like every other time decision: servers whose clocks differ still agree. No row: a check failed.
const issueSql = ({ id }: { id: boolean }) => `with stored as (
    insert into request_token
    (${id ? 'id, ' : ''}scope, target_url, target_host, target_path, target_params, user_id, login_mode, data, max_uses,
     not_before, expires_at, client_id, kid)
    select ${id ? ':id, ' : ''}:scope, :targetUrl, :host, :path, :params, :userId, :loginMode, :data, :maxUses, :notBefore,
      e.expiry, :clientId, :kid
    from (select coalesce(:expiresAt, case when :loginMode = 'SESSION' then now() + make_interval(mins => :sessionMinutes) end)
      as expiry) e
    where (e.expiry is null or e.expiry > now()) and (:notBefore is null or e.expiry is null or :notBefore < e.expiry)
    returning ${tokenFields()}
  )
  select ${tokenColumns('stored')} from stored`;

const ISSUE_TYPES = ISSUE_PARAMS;

export const ISSUE_SQL = namedStatement('issue-token', issueSql({ id: false }), ISSUE_TYPES);

/**
 * ISSUE_SQL with the new token's id given (first parameter, from the id sequence): on Citus the id says which shard
 * the statement goes to (server/domain/citus.ts), so it must be known before the statement is routed.
 */
export const ISSUE_WITH_ID_SQL = namedStatement('issue-token-with-id', issueSql({ id: true }), { id: 'bigint', ...ISSUE_TYPES });

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
    const asked = parseId(input.clientId);
    const known =
      asked !== null &&
      (tenant === null
        ? (await deps.pool.query('select 1 from api_client where id = $1', [asked])).rowCount === 1
        : asked === tenant);
    if (known) clientId = asked;
    else issues.add(['input', 'clientId'], 'no such client');
  }
  issues.throwIfAny();

  const target = input.targetUrl != null ? urlParts(parseHttpUrl(input.targetUrl) as URL) : null;
  const values = {
    scope: input.scope,
    targetUrl: input.targetUrl ?? null,
    host: target?.host ?? null,
    path: target?.path ?? null,
    params: target?.params ?? null,
    userId: input.userId ?? null,
    loginMode: mode,
    data: input.data ?? null,
    maxUses: input.maxUses ?? deps.config.defaultMaxUses,
    notBefore: input.notBefore ?? null,
    expiresAt: input.expiresAt ?? null,
    sessionMinutes: deps.config.sessionTokenExpiryMinutes,
    clientId,
    kid: deps.codec.activeKid(),
    tolerance: deps.config.clockToleranceSeconds,
  };
  // Under load, concurrent issues share one INSERT (issue-batch.ts); alone, or with batching off, ISSUE_SQL.
  const row = deps.issueBatcher
    ? await deps.issueBatcher.issue(values)
    : ((await queryPrepared<TokenRow>(deps.pool, ISSUE_SQL.bind(values)))
        .rows[0] ?? null);
  if (!row) {
    // Rare: say which check failed, judged on the database clock.
    const { rows: clock } = await deps.pool.query('select now() as now');
    const issues = validateIssueInput(input, clock[0].now);
    checkAgainstNow(issues, input, clock[0].now, deps.config.sessionTokenExpiryMinutes);
    if (issues.list.length === 0) issues.add(['input', 'expiresAt'], 'must be in the future');
    issues.throwIfAny();
  }
  const token = tokenFromRow(row!); // no row: the branch above threw
  const jwt = await tokenJwt(deps.codec, token);
  return { token, jwt, url: token.targetUrl ? tokeniseUrl(token.targetUrl, jwt) : null };
}

/** Reading tokens: the tenant filter, the pool listings run on, and the clock tolerance their status depends on. */
export type TokenReadDeps = ListingDeps & { config: Pick<Config, 'clockToleranceSeconds'> };

/** The tolerance is configuration, a whole number: part of the statements' text (and so of their shape). */
const toleranceOf = (deps: TokenReadDeps) => String(Math.trunc(deps.config.clockToleranceSeconds));

/** The tenant's tokens with their status: every token query starts here, so the tenant filter is always on it. */
function tokenQuery(em: EntityManager, tolerance: string) {
  const qb = tenantQueryBuilder(em, RequestToken, 't');
  return qb.select([...TOKEN_FIELDS, raw(`(${statusSql('t', tolerance)}) as status`)]);
}

const TOKEN_FIELDS = [
  'id', 'scope', 'targetUrl', 'userId', 'loginMode', 'data', 'maxUses', 'usedToDate', 'issuedAt', 'notBefore',
  'expiresAt', 'revokedAt', 'clientId', 'kid',
] as const satisfies (keyof RequestToken)[];

/** Another tenant's token reads as missing; so does an id no row can have. */
export async function getToken(deps: TokenReadDeps, id: string): Promise<TokenRecord | null> {
  const tokenId = parseId(id);
  if (tokenId === null) return null;
  const tolerance = toleranceOf(deps);
  const [row] = await runListing<TokenRow>(deps, `token|${tolerance}`, { id: tokenId }, (em, v) =>
    tokenQuery(em, tolerance).andWhere({ id: v.id }),
  );
  return row ? tokenFromRow(row) : null;
}

/** Several tokens by id in one query (the dashboard's log pages name the same few tokens many times). */
export async function getTokens(deps: TokenReadDeps, ids: readonly string[]): Promise<Map<string, TokenRecord>> {
  const valid = parseIds(ids);
  const found = new Map<string, TokenRecord>();
  if (valid.length === 0) return found;
  const tolerance = toleranceOf(deps);
  // One statement for any number of ids: they travel as one array parameter (digits only, parseIds checked them).
  const rows = await runListing<TokenRow>(deps, `tokens-by-id|${tolerance}`, { ids: `{${valid.join(',')}}` }, (em, v) =>
    tokenQuery(em, tolerance).andWhere('t.id = any(?::bigint[])', [v.ids]),
  );
  for (const row of rows) found.set(String(row.id), tokenFromRow(row));
  return found;
}

/** Revokes at once; revoking a revoked token keeps its first revocation time. */
export async function revokeToken(deps: TokenReadDeps, id: string): Promise<TokenRecord> {
  const tokenId = parseId(id);
  if (tokenId === null) throw new NotFoundError('Token');
  // least(): the stored time when there is one (never in the future), else now(). Not coalesce(): Citus refuses a clock
  // function inside COALESCE or CASE in an UPDATE.
  const revoked = await requestEm(deps).nativeUpdate(RequestToken, { id: tokenId }, { revokedAt: raw('least(revoked_at, now())') });
  const token = revoked ? await getToken(deps, tokenId) : null;
  if (!token) throw new NotFoundError('Token');
  return token;
}

export interface TokenFilter {
  scope?: string | null;
  userId?: string | null;
  status?: TokenStatus | null;
}

export async function listTokens(deps: TokenReadDeps, filter: TokenFilter, args: PageArgs): Promise<Page<TokenRecord>> {
  const issues = new Issues();
  const { limit, beforeId } = pageWindow(args, issues);
  if (filter.status != null && !TOKEN_STATUSES.includes(filter.status)) issues.add(['filter', 'status'], 'unknown');
  issues.throwIfAny();

  const tolerance = toleranceOf(deps);
  const values: Record<string, string> = {};
  if (filter.scope != null) values.scope = filter.scope;
  if (filter.userId != null) values.userId = filter.userId;
  if (filter.status != null) values.status = filter.status;
  // A tenant's scope is a range of one value, and the page is ordered by the scope, then the id: the same rows in the
  // same order, read backwards along (scope, client_id, id) from the page's first row. Said as `scope = ?` ordered by
  // the id alone, the planner drops the constant scope from the order, prices the primary key walked backwards as if the
  // scope's tokens were spread evenly over it, and walks it past every newer token of other scopes (bench:scale: the
  // 20,000 tokens issued last, 11 ms a page, where the index reads 21 entries). The collation is deterministic, so
  // `>= x and <= x` is `= x`. An admin key (every client) keeps `=`: the index does not order a scope's tokens of every
  // client by id.
  const scopeRange = filter.scope != null && deps.tenant !== null;
  return keysetPage(
    deps,
    {
      shape: `tokens|${tolerance}`,
      values,
      filtered(em, v) {
        const qb = tokenQuery(em, tolerance);
        if (v.scope !== undefined) qb.andWhere({ scope: scopeRange ? { $gte: v.scope, $lte: v.scope } : v.scope });
        if (v.userId !== undefined) qb.andWhere({ userId: v.userId });
        if (v.status !== undefined) qb.andWhere(`(${statusSql('t', tolerance)}) = ?`, [v.status]);
        return qb;
      },
      idColumn: 't.id',
      leadingOrder: scopeRange ? ['t.scope'] : undefined,
      map: tokenFromRow,
    },
    limit,
    beforeId,
    args.count ?? true,
    // A tenant and a scope are counted from the rollups' tokens issued (exactly; server/domain/log-counts.ts).
    () => countTokensFromRollups({ em: requestEm(deps), pool: deps.pool }, deps.tenant, filter),
  );
}
