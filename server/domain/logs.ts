import type pg from 'pg';
import type { RefusalLog } from './refusal-log.js';
import { Issues, NotFoundError, RequestTokenError } from './errors.js';
import type { ErrorCode } from './errors.js';
import { keysetPage, pageWindow, type Page, type PageArgs } from './paging.js';
import type { Tenant } from './api-keys.js';

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
}

const LOG_COLUMNS = 'l.id, l.token_id, l.error_code, l.user_id, l.client_ip, l.user_agent, l.status_code, l.timestamp, l.released_at';

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
    releasedAt: row.released_at ?? null,
  };
}

const isId = (id: string) => /^\d{1,19}$/.test(id);

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
  { pool, refusalLog }: { pool: pg.Pool; refusalLog: RefusalLog },
  input: RecordStatusInput,
  tenant: Tenant,
): Promise<LogRecord> {
  const issues = new Issues();
  const validStatus = Number.isInteger(input.statusCode) && input.statusCode >= 100 && input.statusCode <= 599;
  if (!validStatus) issues.add(['input', 'statusCode'], 'must be an HTTP status code (100–599)');
  if (input.releaseUse && validStatus && input.statusCode < 500) {
    issues.add(['input', 'releaseUse'], 'gives a use back only when the application failed (statusCode 500–599)');
  }
  issues.throwIfAny();
  if (!isId(input.redemptionId)) throw new NotFoundError('Redemption');
  // A refusal's row may still sit in the batched writer's queue.
  await refusalLog.settle(input.redemptionId);
  if (input.releaseUse) return releaseUse(pool, input.redemptionId, input.statusCode, tenant);
  const { rows } = await pool.query({
    name: 'record-status',
    text: `update request_token_log l set status_code = $2
      where id = $1 and ($3::bigint is null or client_id = $3::bigint) returning ${LOG_COLUMNS}`,
    values: [input.redemptionId, input.statusCode, tenant],
  });
  if (!rows[0]) throw new NotFoundError('Redemption');
  return logFromRow(rows[0]);
}

async function releaseUse(pool: pg.Pool, id: string, statusCode: number, tenant: Tenant): Promise<LogRecord> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('begin');
    // The row lock makes concurrent releases of one redemption take turns: only the first finds released_at null.
    const { rows } = await client.query(
      `select token_id, error_code, released_at from request_token_log
       where id = $1 and ($2::bigint is null or client_id = $2::bigint) for update`,
      [id, tenant],
    );
    if (!rows[0]) throw new NotFoundError('Redemption');
    if (rows[0].error_code !== null || rows[0].token_id === null) {
      const issues = new Issues();
      issues.add(['input', 'releaseUse'], 'only a successful redemption has a use to give back');
      issues.throwIfAny();
    }
    if (rows[0].released_at === null) {
      await client.query('update request_token set used_to_date = used_to_date - 1 where id = $1 and used_to_date > 0', [
        rows[0].token_id,
      ]);
      await client.query('delete from request_token_idempotency where log_id = $1', [id]);
    }
    const updated = await client.query(
      `update request_token_log l set status_code = $2, released_at = coalesce(released_at, now())
       where id = $1 returning ${LOG_COLUMNS}`,
      [id, statusCode],
    );
    await client.query('commit');
    return logFromRow(updated.rows[0]);
  } catch (error) {
    if (!(error instanceof RequestTokenError)) broken = error as Error;
    await client.query('rollback').catch(() => {});
    throw error;
  } finally {
    // A client whose connection failed mid-transaction is discarded rather than handed to the next request.
    client.release(broken);
  }
}

export async function getLog(pool: pg.Pool, id: string, tenant: Tenant): Promise<LogRecord | null> {
  if (!isId(id)) return null;
  const { rows } = await pool.query(
    `select ${LOG_COLUMNS} from request_token_log l where id = $1 and ($2::bigint is null or l.client_id = $2::bigint)`,
    [id, tenant],
  );
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

export async function listLogs(
  pool: pg.Pool,
  filter: LogFilter,
  args: PageArgs,
  tenant: Tenant,
): Promise<Page<LogRecord>> {
  const issues = new Issues();
  const { limit, beforeId } = pageWindow(args, issues);
  if (filter.since && filter.until && filter.since > filter.until) issues.add(['filter', 'until'], 'must not be before since');
  issues.throwIfAny();

  const where: string[] = [];
  const values: unknown[] = [];
  const param = (v: unknown) => `$${values.push(v)}`;
  if (tenant !== null) where.push(`l.client_id = ${param(tenant)}`);
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
  return keysetPage(pool, {
    from: `request_token_log l ${join}`,
    columns: LOG_COLUMNS,
    idColumn: 'l.id',
    where,
    values,
    limit,
    beforeId,
    map: logFromRow,
  });
}
