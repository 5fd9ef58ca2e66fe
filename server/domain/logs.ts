import type { RefusalLog } from './refusal-log.js';
import { LockMode, raw } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { RowOf } from '../database/rows.js';
import { runListing, type ListingDeps, type ListingValues } from './listing-statements.js';
import { RequestTokenIdempotency } from '../database/entities/request-token-idempotency.js';
import { RequestToken } from '../database/entities/request-token.js';
import { NO_TOKEN_ID, RequestTokenLog } from '../database/entities/request-token-log.js';
import { requestEm, tenantQueryBuilder } from '../database/tenant.js';
import { parseId, parseIds } from './ids.js';
import { Issues, NotFoundError } from './errors.js';
import type { ErrorCode } from './errors.js';
import { countLogsFromRollups, rollupCountQuery } from './log-counts.js';
import { encodeCursor, keysetPage, pageWindow, type Page, type PageArgs } from './paging.js';
import { markStaleSql } from './usage-rollups.js';
import {
  briefFromPrefixedRow,
  prefixedBriefColumns,
  prefixedTokenColumns,
  tokenFromPrefixedRow,
  type TokenBrief,
  type TokenProjection,
  type TokenReadDeps,
  type TokenRecord,
} from './tokens.js';

export interface LogRecord {
  id: string;
  tokenId: string | null;
  errorCode: ErrorCode | null;
  userId: string | null;
  clientIp: string | null;
  userAgent: string | null;
  statusCode: number | null;
  timestamp: Date;
  /** When recordResponseStatus gave this redemption's use back; null otherwise. */
  releasedAt: Date | null;
  /**
   * The row's token when it was read with the row (a page of listLogs, as much of it as its TokenProjection reads):
   * null for none; absent when not read.
   */
  token?: TokenRecord | TokenBrief | null;
}

/** A log row as a statement reads it (pg's types: ids as text, timestamps as dates). */
type LogRow = RowOf<RequestTokenLog, Exclude<(typeof LOG_FIELDS)[number], 'token'>> & { token_id: string | number | null };

/** A log row as the API shows it, from its raw row. NO_TOKEN_ID (a refusal no token owns) shows as no token. */
function logFromRow(row: LogRow, ownTokenId: string | number | null = row.token_id): LogRecord {
  const tokenId = ownTokenId == null ? null : String(ownTokenId);
  return {
    id: String(row.id),
    tokenId: tokenId === NO_TOKEN_ID ? null : tokenId,
    errorCode: (row.error_code ?? null) as ErrorCode | null,
    userId: row.user_id ?? null,
    clientIp: row.client_ip ?? null,
    userAgent: row.user_agent ?? null,
    statusCode: row.status_code ?? null,
    timestamp: row.timestamp,
    releasedAt: row.released_at ?? null,
  };
}

const LOG_FIELDS = [
  'id', 'token', 'errorCode', 'userId', 'clientIp', 'userAgent', 'statusCode', 'timestamp', 'releasedAt',
] as const satisfies (keyof RequestTokenLog)[];

/** The tenant's log rows: every log query starts here, so the tenant filter is always on it. */
function logQuery(em: EntityManager) {
  const qb = tenantQueryBuilder(em, RequestTokenLog, 'l');
  return qb.select(LOG_FIELDS.map((f) => `l.${f}`));
}

export interface RecordStatusInput {
  redemptionId: string;
  statusCode: number;
  /** Give the redemption's use back (only with a 5xx status): the application failed to serve the request. */
  releaseUse?: boolean | null;
}

/**
 * Stores the HTTP status the client application answered with on a redemption's (or refusal's) log row. With
 * `releaseUse` the redemption's use goes back to the token, once: the log row keeps when (`released_at`), a second
 * release changes nothing, and the redemption's idempotency key is freed so a retry with it redeems afresh.
 */
export async function recordResponseStatus(
  deps: ListingDeps & { refusalLog?: Pick<RefusalLog, 'settle'> },
  input: RecordStatusInput,
): Promise<LogRecord> {
  const issues = new Issues();
  const validStatus = Number.isInteger(input.statusCode) && input.statusCode >= 100 && input.statusCode <= 599;
  if (!validStatus) issues.add(['input', 'statusCode'], 'must be an HTTP status code (100–599)');
  if (input.releaseUse && validStatus && input.statusCode < 500) {
    issues.add(['input', 'releaseUse'], 'gives a use back only when the application failed (statusCode 500–599)');
  }
  issues.throwIfAny();
  const redemptionId = parseId(input.redemptionId);
  if (redemptionId === null) throw new NotFoundError('Redemption');
  // A refusal's row may still sit in the batched writer's queue.
  await deps.refusalLog?.settle(redemptionId);
  if (input.releaseUse) return releaseUse(deps, redemptionId, input.statusCode);
  const updated = await requestEm(deps).transactional(async (em) => {
    const count = await em.nativeUpdate(RequestTokenLog, { id: redemptionId }, { statusCode: input.statusCode });
    if (count) await markRowStale(em, redemptionId);
    return count;
  });
  if (!updated) throw new NotFoundError('Redemption');
  return (await getLog(deps, redemptionId))!;
}

/**
 * A status recorded (or a use released) after the row's hour was rolled up changes that hour's figures: the hour is
 * marked stale in the same transaction (server/domain/usage-rollups.ts).
 */
const markRowStale = (em: EntityManager, id: string, token?: string) =>
  token === undefined
    ? em.execute(markStaleSql('(select timestamp from request_token_log where id = ?) as r', 'r.timestamp'), [id], 'run')
    : em.execute(
        markStaleSql('(select timestamp from request_token_log where token_id = ? and id = ?) as r', 'r.timestamp'),
        [token, id],
        'run',
      );

async function releaseUse(deps: ListingDeps, id: string, statusCode: number): Promise<LogRecord> {
  // Its token first, so that the row is then locked and changed by (token_id, id): on Citus that names one shard, where
  // a lock by id alone would span every shard (Citus refuses FOR UPDATE there).
  const found = await getLog(deps, id);
  if (!found) throw new NotFoundError('Redemption');
  const token = found.tokenId ?? NO_TOKEN_ID;
  await requestEm(deps).transactional(async (em) => {
    // The row lock makes concurrent releases of one redemption take turns: only the first finds released_at null.
    const [log] = (await logQuery(em)
      .andWhere({ token, id })
      .setLockMode(LockMode.PESSIMISTIC_WRITE)
      .execute('all', false)) as LogRow[];
    if (!log) throw new NotFoundError('Redemption');
    const tokenId = logFromRow(log).tokenId;
    if (log.error_code != null || tokenId === null) {
      const issues = new Issues();
      issues.add(['input', 'releaseUse'], 'only a successful redemption has a use to give back');
      issues.throwIfAny();
    }
    if (log.released_at == null) {
      await em.nativeUpdate(RequestToken, { id: tokenId!, usedToDate: { $gt: 0 } }, { usedToDate: raw('used_to_date - 1') });
      await em.nativeDelete(RequestTokenIdempotency, { tokenId: tokenId!, logId: id });
    }
    // least(), not coalesce(): Citus refuses now() inside COALESCE in an UPDATE (the stored time is never in the future).
    await em.nativeUpdate(RequestTokenLog, { token, id }, { statusCode, releasedAt: raw('least(released_at, now())') });
    await markRowStale(em, id, token);
  });
  return (await getLog(deps, id))!;
}

export async function getLog(deps: ListingDeps, id: string): Promise<LogRecord | null> {
  const logId = parseId(id);
  if (logId === null) return null;
  const [row] = await runListing<LogRow>(deps, 'log', { id: logId }, (em, v) => logQuery(em).andWhere({ id: v.id }));
  return row ? logFromRow(row) : null;
}

export interface LogFilter {
  tokenId?: string | null;
  scope?: string | null;
  userId?: string | null;
  statusCode?: number | null;
  /** true: only refusals; false: only successes. */
  failed?: boolean | null;
  since?: Date | null;
  until?: Date | null;
}

/**
 * A page of the log, newest first, each row with its token (as much of it as `tokens` says: the GraphQL field reads
 * what its query selects). A filter on one token reads its count in the page's statement: one round trip.
 */
export async function listLogs(
  deps: TokenReadDeps,
  filter: LogFilter,
  args: PageArgs,
  tokens: TokenProjection = 'full',
): Promise<Page<LogRecord>> {
  const issues = new Issues();
  const { limit, beforeId } = pageWindow(args, issues);
  if (filter.since && filter.until && filter.since > filter.until) issues.add(['filter', 'until'], 'must not be before since');
  if (filter.statusCode != null && !(Number.isInteger(filter.statusCode) && filter.statusCode >= 100 && filter.statusCode <= 599)) {
    issues.add(['filter', 'statusCode'], 'must be an HTTP status code (100–599)');
  }
  issues.throwIfAny();

  // The statement's shape: which filters are present (their values are parameters), and what else changes its text.
  const tolerance = String(Math.trunc(deps.config.clockToleranceSeconds));
  const values: Record<string, string | number | Date> = {};
  // An id that cannot exist matches nothing.
  const tokenId = filter.tokenId == null ? null : parseId(filter.tokenId);
  const nothing = filter.tokenId != null && tokenId === null;
  if (tokenId !== null) values.tokenId = tokenId;
  if (filter.scope != null) values.scope = filter.scope;
  if (filter.userId != null) values.userId = filter.userId;
  if (filter.statusCode != null) values.statusCode = filter.statusCode;
  if (filter.since) values.since = filter.since;
  if (filter.until) values.until = filter.until;
  const failed = filter.failed == null ? '' : String(filter.failed);
  // The filters the hourly rollups are keyed by are counted from them (exactly; server/domain/log-counts.ts). Known
  // before anything runs, so that a page counted otherwise forks no EntityManager.
  const rollups = rollupCountQuery(deps.tenant, filter) !== null;
  return keysetPage(
    deps,
    {
      shape: `logs|${tolerance}|${nothing ? 'nothing' : ''}|failed:${failed}|token:${tokens}`,
      values,
      filtered(em, v) {
        const qb = logQuery(em);
        if (nothing) qb.andWhere('1 = 0');
        if (v.tokenId !== undefined) qb.andWhere({ token: v.tokenId });
        if (v.scope !== undefined) {
          const scoped = tenantQueryBuilder(em, RequestToken, 't').select('t.id').andWhere({ scope: v.scope });
          qb.andWhere({ token: { $in: scoped.getKnexQuery() } });
        }
        if (v.userId !== undefined) qb.andWhere({ userId: v.userId });
        if (v.statusCode !== undefined) qb.andWhere({ statusCode: v.statusCode });
        if (failed === 'true') qb.andWhere({ errorCode: { $ne: null } });
        if (failed === 'false') qb.andWhere({ errorCode: null });
        if (v.since !== undefined) qb.andWhere({ timestamp: { $gte: v.since } });
        if (v.until !== undefined) qb.andWhere({ timestamp: { $lt: v.until } });
        return qb;
      },
      idColumn: 'l.id',
      // One token's rows are counted through the primary key's (token_id, …) prefix, about as cheaply as its page is
      // read: the count rides in the page's statement.
      countWithPage: tokenId !== null,
      // Each row's token in the same statement (a left join on the token's primary key: a refusal no token owns finds
      // none), so that a page of logs with their tokens is one round trip, not two. Joined to the page's rows, after
      // its limit: joined inside, to every row the filter walks, PostgreSQL planned a Memoize node sized for all of
      // them, whose hash table alone cost milliseconds per page (docs/hot-path.md). The tenant filter is the page's.
      outer:
        tokens === 'none'
          ? undefined
          : (inner) =>
              `select p.*, ${tokens === 'brief' ? prefixedBriefColumns('t') : prefixedTokenColumns('t', tolerance)}
               from (${inner}) p left join request_token t on t.id = p.token_id order by p.id desc`,
      map: (row: LogRow) => {
        const log = logFromRow(row);
        if (tokens !== 'none') log.token = tokens === 'brief' ? briefFromPrefixedRow(row) : tokenFromPrefixedRow(row);
        return log;
      },
    },
    limit,
    beforeId,
    args.count ?? true,
    rollups ? () => countLogsFromRollups({ em: requestEm(deps), pool: deps.pool }, deps.tenant, filter) : undefined,
  );
}

/**
 * The first page of each token's log (newest first), for many tokens at once: one statement for the pages (a window
 * per token) and one for the counts, however many tokens. Nested `logs` fields load through this, so a request's
 * statements grow with its depth, not with its rows.
 */
export async function listLogsOfTokens(
  deps: ListingDeps,
  tokenIds: readonly string[],
  args: PageArgs,
): Promise<Map<string, Page<LogRecord>>> {
  const issues = new Issues();
  const { limit, beforeId } = pageWindow(args, issues);
  issues.throwIfAny();
  const ids = parseIds(tokenIds);
  const pages = new Map<string, Page<LogRecord>>();
  const empty = (): Page<LogRecord> => ({
    nodes: [],
    hasNextPage: false,
    hasPreviousPage: beforeId !== null,
    totalCount: 0,
    cursorOf: (node) => encodeCursor(node.id),
  });
  if (ids.length === 0) return pages;

  // Any number of tokens in one statement each: the ids travel as one array parameter (digits only, parseIds checked).
  const values: ListingValues = { ids: `{${ids.join(',')}}` };
  const windowValues: ListingValues = beforeId === null ? { ...values, $limit: limit + 1 } : { ...values, $before: beforeId, $limit: limit + 1 };
  const [rows, counts] = await Promise.all([
    runListing<LogRow>(
      deps,
      'logs-of-tokens|page',
      windowValues,
      (em, v) => {
        const windowed = logQuery(em)
          .addSelect(raw('row_number() over (partition by l.token_id order by l.id desc) as position'))
          .andWhere('l.token_id = any(?::bigint[])', [v.ids]);
        if (v.$before !== undefined) windowed.andWhere({ id: { $lt: v.$before } });
        return windowed;
      },
      // The tenant filter is in the inner query; the outer one only cuts each token's window.
      (inner, param) => `select * from (${inner}) w where w.position <= ${param('$limit')} order by w.token_id, w.id desc`,
    ),
    runListing<{ token_id: string; n: number }>(deps, 'logs-of-tokens|count', values, (em, v) =>
      tenantQueryBuilder(em, RequestTokenLog, 'l')
        .select(['l.token', raw('count(*)::int as n')])
        .andWhere('l.token_id = any(?::bigint[])', [v.ids])
        .groupBy('l.token'),
    ),
  ]);
  for (const id of ids) pages.set(id, empty());
  for (const count of counts) pages.get(String(count.token_id))!.totalCount = count.n;
  for (const row of rows) {
    const log = logFromRow(row);
    const page = pages.get(log.tokenId!)!;
    if (page.nodes.length < limit) page.nodes.push(log);
    else page.hasNextPage = true;
  }
  return pages;
}
