import { DEFAULT_CLIENT_ID } from '../database/entities/api-client.js';
import { Issues } from './errors.js';
import { tenantOf } from './api-keys.js';
import { parseHttpUrl, tokeniseUrl, urlParts } from './target-url.js';
import {
  checkAgainstNow,
  tokenColumns,
  tokenFields,
  tokenFromRow,
  type TokenRow,
  tokenJwt,
  validateIssueInput,
  type IssueInput,
  type Issued,
  type TokenDeps,
} from './tokens.js';
import { isDatabaseId } from './ids.js';
import { queryPrepared } from '../database/prepared-query.js';

/** Most tokens one createRequestTokens call issues. */
export const MAX_BULK_ISSUE = 10_000;

// One statement for the whole batch: the rows come from parallel arrays (unnest), in input order (`order by n`), so
// the bigserial ids grow with the input index and the returned rows, sorted by id, line up with the inputs. A single
// statement is atomic: every token is stored, or none. As for one token (ISSUE_SQL), the checks against the present
// are made on the database clock: if any row fails them, no row is stored.
/**
 * The bulk statement's name on the hot pool. Its parameters: the eleven column arrays (scope, target_url, target_host,
 * target_path, target_params, user_id, login_mode, data, max_uses, not_before, expires_at), the session expiry in
 * minutes, the client ids, the kid and the clock tolerance; on Citus server/domain/citus.ts runs it by shard.
 */
export const BULK_ISSUE_STATEMENT = 'issue-tokens';

const BULK_ISSUE_SQL = `with input as (
    select i.*, coalesce(i.expires_at, case when i.login_mode = 'SESSION' then now() + make_interval(mins => $12) end)
      as expiry
    from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
      $8::text[], $9::int[], $10::timestamptz[], $11::timestamptz[], $13::bigint[])
      with ordinality as i(scope, target_url, target_host, target_path, target_params, user_id, login_mode, data,
        max_uses, not_before, expires_at, client_id, n)
  ), stored as (
    insert into request_token
      (scope, target_url, target_host, target_path, target_params, user_id, login_mode, data, max_uses, not_before,
       expires_at, client_id, kid)
    select scope, target_url, target_host, target_path, target_params::jsonb, user_id, login_mode, data::jsonb,
      max_uses, not_before, expiry, client_id, $14::text
    from input
    where not exists (select 1 from input c where not (
      (c.expiry is null or c.expiry > now()) and (c.not_before is null or c.expiry is null or c.not_before < c.expiry)))
    order by n
    returning ${tokenFields()}
  )
  select ${tokenColumns('stored', '$15::int')} from stored order by id`;

/**
 * Issues up to MAX_BULK_ISSUE tokens at once: every input is validated first (issues name the index:
 * `["inputs", "3", "scope"]`), then all are stored by one INSERT, and their JWTs are signed. All or nothing.
 */
export async function issueTokens(deps: TokenDeps, inputs: IssueInput[]): Promise<Issued[]> {
  const issues = new Issues();
  if (inputs.length > MAX_BULK_ISSUE) {
    issues.add(['inputs'], `must hold at most ${MAX_BULK_ISSUE} items, got ${inputs.length}`);
    issues.throwIfAny();
  }
  inputs.forEach((input, i) => issues.list.push(...validateIssueInput(input, null, ['inputs', String(i)]).list));
  // Tokens go into the caller's client; an admin key may name a client per input (as createRequestToken allows).
  const tenant = tenantOf(deps.caller);
  const named = [...new Set(inputs.flatMap((input) => (input.clientId != null ? [input.clientId] : [])))];
  let known = new Set<string>();
  if (named.length > 0 && tenant === null) {
    const valid = named.filter(isDatabaseId);
    const { rows } = await deps.pool.query('select id::text from api_client where id = any($1::bigint[])', [valid]);
    known = new Set(rows.map((r) => r.id as string));
  } else if (tenant !== null) {
    known = new Set([tenant]);
  }
  const clientIds = inputs.map((input, i) => {
    if (input.clientId == null) return tenant ?? DEFAULT_CLIENT_ID;
    if (!known.has(input.clientId)) issues.add(['inputs', String(i), 'clientId'], 'no such client');
    return input.clientId;
  });
  issues.throwIfAny();
  if (inputs.length === 0) return [];

  const columns: unknown[][] = Array.from({ length: 11 }, () => new Array(inputs.length));
  inputs.forEach((input, i) => {
    const target = input.targetUrl != null ? urlParts(parseHttpUrl(input.targetUrl) as URL) : null;
    columns[0][i] = input.scope;
    columns[1][i] = input.targetUrl ?? null;
    columns[2][i] = target?.host ?? null;
    columns[3][i] = target?.path ?? null;
    columns[4][i] = target ? JSON.stringify(target.params) : null;
    columns[5][i] = input.userId ?? null;
    columns[6][i] = input.loginMode ?? 'NONE';
    columns[7][i] = input.data == null ? null : JSON.stringify(input.data);
    columns[8][i] = input.maxUses ?? deps.config.defaultMaxUses;
    columns[9][i] = input.notBefore ?? null;
    columns[10][i] = input.expiresAt ?? null;
  });
  const { rows } = await queryPrepared<TokenRow>(deps.pool, {
    name: BULK_ISSUE_STATEMENT,
    text: BULK_ISSUE_SQL,
    values: [
      ...columns,
      deps.config.sessionTokenExpiryMinutes,
      clientIds,
      deps.codec.activeKid(),
      deps.config.clockToleranceSeconds,
    ],
  });
  if (rows.length !== inputs.length) {
    // A check against the present failed: say which, judged on the database clock.
    const { rows: clock } = await deps.pool.query('select now() as now');
    const now: Date = clock[0].now;
    inputs.forEach((input, i) => {
      const path = ['inputs', String(i)];
      issues.list.push(...validateIssueInput(input, now, path).list);
      checkAgainstNow(issues, input, now, deps.config.sessionTokenExpiryMinutes, path);
    });
    if (issues.list.length === 0) issues.add(['inputs'], 'a token expired while being issued; nothing was stored');
    issues.throwIfAny();
  }
  const tokens = rows.map(tokenFromRow);
  const jwts = await Promise.all(tokens.map((token) => tokenJwt(deps.codec, token)));
  return tokens.map((token, i) => ({
    token,
    jwt: jwts[i],
    url: token.targetUrl ? tokeniseUrl(token.targetUrl, jwts[i]) : null,
  }));
}
