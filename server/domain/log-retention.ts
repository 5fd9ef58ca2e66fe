import type pg from 'pg';
import { Issues } from './errors.js';

export interface RetentionPolicy {
  /** Keep at most this many log rows, the newest (by id). */
  maxCount?: number | null;
  /** Keep only rows from the last this many days (24-hour periods back from now, on the database clock). */
  maxDays?: number | null;
  /** Rows deleted per statement; each batch is its own short transaction. Default 5,000. */
  batchSize?: number | null;
  /** Delete every row there is when the call starts; alone, without maxCount or maxDays. */
  all?: boolean | null;
}

export interface DoomedRows {
  count: number;
  firstId: string | null;
  lastId: string | null;
  oldest: Date | null;
  newest: Date | null;
}

export interface TruncateOptions {
  /** Count what would go, delete nothing. */
  dryRun?: boolean;
  /** Called once the doomed rows are known, before deleting. */
  onPlan?(plan: DoomedRows & { cutoffId: string | null; cutoffTime: Date | null }): void;
  /** Called after each batch. */
  onBatch?(batch: DoomedRows): void;
}

export const DEFAULT_BATCH_SIZE = 5_000;
const MAX_INT = 2_147_483_647;

export function validateRetentionPolicy(policy: RetentionPolicy, path: string[] = []): Issues {
  const issues = new Issues();
  const { maxCount, maxDays, batchSize, all } = policy;
  if (all) {
    if (maxCount != null || maxDays != null) issues.add([...path, 'all'], 'deletes every row: give it without maxCount and maxDays');
  } else if (maxCount == null && maxDays == null) {
    issues.add(path, 'give maxCount, maxDays or both (or all, to delete every row)');
  }
  // 0 would delete the whole log, where django-request-token's command (and many a retention setting) reads it as
  // "no limit": emptying the log takes `all`, said in so many words.
  const zero = 'must be at least 1: 0 would delete every row (django-request-token read it as no limit); to empty the log, use all';
  if (maxCount === 0) issues.add([...path, 'maxCount'], zero);
  else if (maxCount != null && (!Number.isInteger(maxCount) || maxCount < 1 || maxCount > MAX_INT)) {
    issues.add([...path, 'maxCount'], 'must be a whole number of at least 1');
  }
  if (maxDays === 0) issues.add([...path, 'maxDays'], zero);
  else if (maxDays != null && (!Number.isInteger(maxDays) || maxDays < 1 || maxDays > 100_000)) {
    issues.add([...path, 'maxDays'], 'must be a whole number of days, at least 1');
  }
  if (batchSize != null && (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 100_000)) {
    issues.add([...path, 'batchSize'], 'must be between 1 and 100000');
  }
  return issues;
}

/** The aggregate row of the statements below: how many log rows, their id range and time range. */
interface DoomedRow {
  n: number;
  first_id: string | null;
  last_id: string | null;
  oldest: Date | null;
  newest: Date | null;
}

const rowsOf = (row: DoomedRow): DoomedRows => ({
  count: row.n,
  firstId: row.first_id === null ? null : String(row.first_id),
  lastId: row.last_id === null ? null : String(row.last_id),
  oldest: row.oldest,
  newest: row.newest,
});

/**
 * Deletes the log rows beyond the newest `maxCount` and/or older than `maxDays` (or `all` of them), oldest first, in batches so that a
 * large table is never locked for long. The cut-offs are fixed once at the start: rows written meanwhile are kept.
 * Returns what was deleted (with `dryRun`, what would be).
 */
export async function truncateLogs(
  pool: pg.Pool,
  policy: RetentionPolicy,
  options: TruncateOptions = {},
): Promise<DoomedRows> {
  validateRetentionPolicy(policy).throwIfAny();
  const batchSize = policy.batchSize ?? DEFAULT_BATCH_SIZE;

  // The id of the newest row beyond maxCount (primary-key index, read backwards), and the time limit.
  const { rows: cut } = await pool.query(
    `select
       case when $3::boolean then (select max(id) from request_token_log)
            when $1::int is null then null
            else (select id from request_token_log order by id desc offset $1::int limit 1) end as cutoff_id,
       case when $2::int is null then null else now() - make_interval(days => $2::int) end as cutoff_time`,
    [policy.maxCount ?? null, policy.maxDays ?? null, policy.all === true],
  );
  const cutoffId: string | null = cut[0].cutoff_id === null ? null : String(cut[0].cutoff_id);
  const cutoffTime: Date | null = cut[0].cutoff_time;
  const values: unknown[] = [];
  const doomed: string[] = [];
  if (cutoffId !== null) doomed.push(`id <= $${values.push(cutoffId)}`);
  if (cutoffTime !== null) doomed.push(`timestamp < $${values.push(cutoffTime)}`);
  if (doomed.length === 0) {
    // maxCount only, and the table holds no more than maxCount rows (or all, and the table is empty).
    const none = { count: 0, firstId: null, lastId: null, oldest: null, newest: null };
    options.onPlan?.({ ...none, cutoffId, cutoffTime });
    return none;
  }
  const condition = doomed.join(' or ');

  const { rows: planned } = await pool.query(
    `select count(*)::int as n, min(id) as first_id, max(id) as last_id, min(timestamp) as oldest, max(timestamp) as newest
     from request_token_log where ${condition}`,
    values,
  );
  const plan = rowsOf(planned[0]);
  options.onPlan?.({ ...plan, cutoffId, cutoffTime });
  if (options.dryRun || plan.count === 0) return plan;

  const total: DoomedRows = { count: 0, firstId: null, lastId: null, oldest: null, newest: null };
  const limit = `$${values.push(batchSize)}`;
  for (;;) {
    const { rows } = await pool.query(
      // `id = any(array(…))` makes each batch a primary-key lookup of the ids picked; a join with the picked ids would
      // let the planner hash-join against a scan of the whole table on every batch.
      `with deleted as (
         delete from request_token_log
         where id = any(array(select id from request_token_log where ${condition} order by id limit ${limit}))
         returning token_id, id, timestamp
       ), keys as (
         -- The idempotency keys of the rows deleted (no foreign key cascades to them any more).
         delete from request_token_idempotency k using deleted d where k.token_id = d.token_id and k.log_id = d.id
       )
       select count(*)::int as n, min(id) as first_id, max(id) as last_id, min(timestamp) as oldest,
         max(timestamp) as newest
       from deleted`,
      values,
    );
    const batch = rowsOf(rows[0]);
    if (batch.count > 0) {
      options.onBatch?.(batch);
      total.count += batch.count;
      total.firstId ??= batch.firstId;
      total.lastId = batch.lastId;
      if (!total.oldest || (batch.oldest && batch.oldest < total.oldest)) total.oldest = batch.oldest;
      if (!total.newest || (batch.newest && batch.newest > total.newest)) total.newest = batch.newest;
    }
    if (batch.count < batchSize) return total;
  }
}
