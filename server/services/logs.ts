import type pg from 'pg';
import { Issues, NotFoundError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import { encodeCursor, pageWindow, type Page, type PageArgs } from '../paging.js';

export interface LogRecord {
  id: string;
  tokenId: string | null;
  errorCode: ErrorCode | null;
  userId: string | null;
  clientIp: string | null;
  userAgent: string | null;
  statusCode: number | null;
  timestamp: Date;
}

const LOG_COLUMNS = 'l.id, l.token_id, l.error_code, l.user_id, l.client_ip, l.user_agent, l.status_code, l.timestamp';

function logFromRow(row: Record<string, any>): LogRecord {
  return {
    id: String(row.id),
    tokenId: row.token_id === null ? null : String(row.token_id),
    errorCode: row.error_code,
    userId: row.user_id,
    clientIp: row.client_ip,
    userAgent: row.user_agent,
    statusCode: row.status_code,
    timestamp: row.timestamp,
  };
}

const isId = (id: string) => /^\d{1,19}$/.test(id);

export interface RecordStatusInput {
  redemptionId: string;
  statusCode: number;
}

/** Stores the HTTP status the client application answered with on a redemption's (or refusal's) log row. */
export async function recordResponseStatus(pool: pg.Pool, input: RecordStatusInput): Promise<LogRecord> {
  const issues = new Issues();
  if (!Number.isInteger(input.statusCode) || input.statusCode < 100 || input.statusCode > 599) {
    issues.add(['input', 'statusCode'], 'must be an HTTP status code (100–599)');
  }
  issues.throwIfAny();
  if (!isId(input.redemptionId)) throw new NotFoundError('Redemption');
  const { rows } = await pool.query({
    name: 'record-status',
    text: `update request_token_log l set status_code = $2 where id = $1 returning ${LOG_COLUMNS}`,
    values: [input.redemptionId, input.statusCode],
  });
  if (!rows[0]) throw new NotFoundError('Redemption');
  return logFromRow(rows[0]);
}

export async function getLog(pool: pg.Pool, id: string): Promise<LogRecord | null> {
  if (!isId(id)) return null;
  const { rows } = await pool.query(`select ${LOG_COLUMNS} from request_token_log l where id = $1`, [id]);
  return rows[0] ? logFromRow(rows[0]) : null;
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

export async function listLogs(pool: pg.Pool, filter: LogFilter, args: PageArgs): Promise<Page<LogRecord>> {
  const issues = new Issues();
  const { limit, beforeId } = pageWindow(args, issues);
  if (filter.since && filter.until && filter.since > filter.until) issues.add(['filter', 'until'], 'must not be before since');
  issues.throwIfAny();

  const where: string[] = [];
  const values: unknown[] = [];
  const param = (v: unknown) => `$${values.push(v)}`;
  if (filter.tokenId != null) {
    // An id that cannot exist matches nothing rather than failing the cast.
    where.push(isId(filter.tokenId) ? `l.token_id = ${param(filter.tokenId)}` : 'false');
  }
  if (filter.scope != null) where.push(`t.scope = ${param(filter.scope)}`);
  if (filter.userId != null) where.push(`l.user_id = ${param(filter.userId)}`);
  if (filter.statusCode != null) where.push(`l.status_code = ${param(filter.statusCode)}`);
  if (filter.failed === true) where.push('l.error_code is not null');
  if (filter.failed === false) where.push('l.error_code is null');
  if (filter.since) where.push(`l.timestamp >= ${param(filter.since)}`);
  if (filter.until) where.push(`l.timestamp < ${param(filter.until)}`);
  const join = filter.scope != null ? 'join request_token t on t.id = l.token_id' : '';
  const countValues = [...values];
  const countWhere = where.length ? `where ${where.join(' and ')}` : '';
  if (beforeId) where.push(`l.id < ${param(beforeId)}`);
  const pageWhere = where.length ? `where ${where.join(' and ')}` : '';

  const [page, count] = await Promise.all([
    pool.query(
      `select ${LOG_COLUMNS} from request_token_log l ${join} ${pageWhere} order by l.id desc limit ${param(limit + 1)}`,
      values,
    ),
    pool.query(`select count(*)::int as n from request_token_log l ${join} ${countWhere}`, countValues),
  ]);
  return {
    nodes: page.rows.slice(0, limit).map(logFromRow),
    hasNextPage: page.rows.length > limit,
    hasPreviousPage: beforeId !== null,
    totalCount: count.rows[0].n,
    cursorOf: (l) => encodeCursor(l.id),
  };
}
