import type { RefusalLog } from './refusal-log.js';
import { LockMode, raw } from '@mikro-orm/core';
import type { EntityManager, QueryBuilder } from '@mikro-orm/postgresql';
import { RequestTokenIdempotency } from '../database/entities/request-token-idempotency.js';
import { RequestToken } from '../database/entities/request-token.js';
import { NO_TOKEN_ID, RequestTokenLog } from '../database/entities/request-token-log.js';
import { requestEm, tenantQueryBuilder, type TenantDeps } from '../database/tenant.js';
import { parseId, parseIds } from './ids.js';
import { Issues, NotFoundError } from './errors.js';
import type { ErrorCode } from './errors.js';
import { countLogsFromRollups } from './log-counts.js';
import { encodeCursor, keysetPage, pageWindow, type Page, type PageArgs } from './paging.js';
import { markStaleSql } from './usage-rollups.js';
import { prefixedTokenColumns, tokenFromPrefixedRow, type TokenReadDeps, type TokenRecord } from './tokens.js';

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
  /** The row's token when it was read with the row (a page of listLogs): null for none; absent when not read. */
  token?: TokenRecord | null;
}

type LogRow = RequestTokenLog & { tokenId: string | null };

/** A log row as the API shows it, from the entity. NO_TOKEN_ID (a refusal no token owns) shows as no token. */
function logFromEntity(row: RequestTokenLog): LogRecord {
  const token = row.token as unknown;
  const tokenId = token == null ? null : typeof token === 'object' ? String((token as { id: string }).id) : String(token);
  return {
    id: row.id,
    tokenId: tokenId === NO_TOKEN_ID ? null : tokenId,
    errorCode: (row.errorCode ?? null) as ErrorCode | null,
    userId: row.userId ?? null,
    clientIp: row.clientIp ?? null,
    userAgent: row.userAgent ?? null,
    statusCode: row.statusCode ?? null,
    timestamp: row.timestamp,
    releasedAt: row.releasedAt ?? null,
  };
}

const LOG_FIELDS = [
  'id', 'token', 'errorCode', 'userId', 'clientIp', 'userAgent', 'statusCode', 'timestamp', 'releasedAt',
] as const satisfies (keyof RequestTokenLog)[];

/** The tenant's log rows: every log query starts here, so the tenant filter is always on it. */
function logQuery(deps: TenantDeps, em: EntityManager = requestEm(deps)) {
  const qb = tenantQueryBuilder(em, RequestTokenLog, 'l');
  return qb.select(LOG_FIELDS.map((f) => `l.${f}`));
}

const readLogs = async (qb: QueryBuilder<any, any>): Promise<LogRecord[]> =>
  ((await qb.execute('all', true)) as LogRow[]).map(logFromEntity);

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
  deps: TenantDeps & { refusalLog?: Pick<RefusalLog, 'settle'> },
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
const markRowStale = (em: EntityManager, id: string) =>
  em.execute(markStaleSql('(select timestamp from request_token_log where id = ?) as r', 'r.timestamp'), [id], 'run');

async function releaseUse(deps: TenantDeps, id: string, statusCode: number): Promise<LogRecord> {
  return requestEm(deps).transactional(async (em) => {
    // The row lock makes concurrent releases of one redemption take turns: only the first finds released_at null.
    const [log] = await readLogs(logQuery(deps, em).andWhere({ id }).setLockMode(LockMode.PESSIMISTIC_WRITE));
    if (!log) throw new NotFoundError('Redemption');
    if (log.errorCode !== null || log.tokenId === null) {
      const issues = new Issues();
      issues.add(['input', 'releaseUse'], 'only a successful redemption has a use to give back');
      issues.throwIfAny();
    }
    if (log.releasedAt === null) {
      await em.nativeUpdate(
        RequestToken,
        { id: log.tokenId!, usedToDate: { $gt: 0 } },
        { usedToDate: raw('used_to_date - 1') },
      );
      await em.nativeDelete(RequestTokenIdempotency, { tokenId: log.tokenId!, logId: id });
    }
    await em.nativeUpdate(RequestTokenLog, { id }, { statusCode, releasedAt: raw('coalesce(released_at, now())') });
    await markRowStale(em, id);
    const [updated] = await readLogs(logQuery(deps, em).andWhere({ id }));
    return updated;
  });
}

export async function getLog(deps: TenantDeps, id: string): Promise<LogRecord | null> {
  const logId = parseId(id);
  if (logId === null) return null;
  const [log] = await readLogs(logQuery(deps).andWhere({ id: logId }));
  return log ?? null;
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

/** The joined token's select list, by clock tolerance (configuration: one or two entries per process). */
const joinedTokenColumns = new Map<number, string>();

/**
 * A page's rows with each row's token, read in the same statement (a left join on the token's primary key: a refusal
 * no token owns finds none), so that a page of logs with their tokens is one round trip, not two.
 */
async function readLogsWithTokens(deps: TokenReadDeps, page: QueryBuilder<any, any>): Promise<LogRecord[]> {
  const tolerance = Math.trunc(deps.config.clockToleranceSeconds);
  let columns = joinedTokenColumns.get(tolerance);
  // With the join, MikroORM reads `l.token` as the joined token's id: the log's own token_id is read under a name of
  // its own (a refusal no token owns has no joined token, but its token_id, NO_TOKEN_ID).
  if (!columns) joinedTokenColumns.set(tolerance, (columns = `l.token_id as l_token_id, ${prefixedTokenColumns('t', String(tolerance))}`));
  page.leftJoin('l.token', 't').addSelect(raw(columns));
  const rows = (await page.execute('all', true)) as (LogRow & Record<string, unknown>)[];
  return rows.map((row) => ({ ...logFromEntity({ ...row, token: row.l_token_id } as never), token: tokenFromPrefixedRow(row) }));
}

export async function listLogs(deps: TokenReadDeps, filter: LogFilter, args: PageArgs): Promise<Page<LogRecord>> {
  const issues = new Issues();
  const { limit, beforeId } = pageWindow(args, issues);
  if (filter.since && filter.until && filter.since > filter.until) issues.add(['filter', 'until'], 'must not be before since');
  if (filter.statusCode != null && !(Number.isInteger(filter.statusCode) && filter.statusCode >= 100 && filter.statusCode <= 599)) {
    issues.add(['filter', 'statusCode'], 'must be an HTTP status code (100–599)');
  }
  issues.throwIfAny();

  const qb = logQuery(deps);
  if (filter.tokenId != null) {
    // An id that cannot exist matches nothing.
    const tokenId = parseId(filter.tokenId);
    if (tokenId === null) qb.andWhere('1 = 0');
    else qb.andWhere({ token: tokenId });
  }
  if (filter.scope != null) {
    const scoped = tenantQueryBuilder(requestEm(deps), RequestToken, 't').select('t.id').andWhere({ scope: filter.scope });
    qb.andWhere({ token: { $in: scoped.getKnexQuery() } });
  }
  if (filter.userId != null) qb.andWhere({ userId: filter.userId });
  if (filter.statusCode != null) qb.andWhere({ statusCode: filter.statusCode });
  if (filter.failed === true) qb.andWhere({ errorCode: { $ne: null } });
  if (filter.failed === false) qb.andWhere({ errorCode: null });
  if (filter.since) qb.andWhere({ timestamp: { $gte: filter.since } });
  if (filter.until) qb.andWhere({ timestamp: { $lt: filter.until } });
  // The filters the hourly rollups are keyed by are counted from them (exactly; server/domain/log-counts.ts).
  const fromRollups = () => countLogsFromRollups(requestEm(deps), deps.tenant, filter);
  return keysetPage(qb, 'l.id', limit, beforeId, (page) => readLogsWithTokens(deps, page), args.count ?? true, fromRollups);
}

/**
 * The first page of each token's log (newest first), for many tokens at once: one statement for the pages (a window
 * per token) and one for the counts, however many tokens. Nested `logs` fields load through this, so a request's
 * statements grow with its depth, not with its rows.
 */
export async function listLogsOfTokens(
  deps: TenantDeps,
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

  const em = requestEm(deps);
  const windowed = logQuery(deps)
    .addSelect(raw('row_number() over (partition by l.token_id order by l.id desc) as position'))
    .andWhere({ token: { $in: ids } });
  if (beforeId !== null) windowed.andWhere({ id: { $lt: beforeId } });
  const counted = (tenantQueryBuilder(em, RequestTokenLog, 'l'))
    .select(['l.token', raw('count(*)::int as n')])
    .andWhere({ token: { $in: ids } })
    .groupBy('l.token');
  const [rows, counts] = await Promise.all([
    // The tenant filter is in the inner query; the outer one only cuts each token's window.
    em.getConnection().execute<(LogRow & { position: string })[]>(
      `select * from (${windowed.getFormattedQuery()}) w where w.position <= ? order by w.token_id, w.id desc`,
      [limit + 1],
    ),
    counted.execute('all', true) as Promise<{ token: string; n: number }[]>,
  ]);
  for (const id of ids) pages.set(id, empty());
  for (const count of counts) pages.get(String(count.token))!.totalCount = count.n;
  for (const row of rows) {
    const log = logFromEntity(em.getDriver().mapResult(row, em.getMetadata().get(RequestTokenLog.meta.className)) as never);
    const page = pages.get(log.tokenId!)!;
    if (page.nodes.length < limit) page.nodes.push(log);
    else page.hasNextPage = true;
  }
  return pages;
}
