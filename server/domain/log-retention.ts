import { logIsDistributed } from '../database/citus.js';
import { inTransaction } from '../database/transaction.js';
import type pg from 'pg';
import { LOG_TABLE, listLogPartitions, UPKEEP_LOCK, type LogPartition } from './log-partitions.js';
import { Issues } from './errors.js';
import { markStaleRange, markStaleSpanSql } from './usage-rollups.js';

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

/** What one step of retention removed: every removed row has oldest <= timestamp <= newest. */
export interface RemovedSpan extends DoomedRows {
  /** The whole month's partition, detached and dropped; null for a batch deleted inside a partition. */
  droppedPartition: string | null;
}

export interface TruncateOptions {
  /** Count what would go, delete nothing. */
  dryRun?: boolean;
  /** Called once the doomed rows are known, before deleting. */
  onPlan?(plan: DoomedRows & { cutoffId: string | null; cutoffTime: Date | null }): void;
  /** Called after each batch deleted inside a partition and each partition dropped. */
  onBatch?(batch: RemovedSpan): void;
  /**
   * The seam for what is derived from the log (hourly rollups): called inside the transaction of each step, after its
   * rows are gone and before it commits, with that transaction's client and what the step removed. Whatever it
   * writes commits with the removal, or neither does.
   */
  onRemoved?(client: pg.PoolClient, removed: RemovedSpan): Promise<void>;
  /**
   * How many connections a cut-through runs on at once (default CUT_THROUGH_CONNECTIONS): the doomed rows of a month
   * in as many segments, each deleted in its own batches (onBatch and onRemoved may then be called for batches of two
   * segments in turn, and onRemoved for two at once, on two clients).
   */
  connections?: number;
  /**
   * Takes over the drop of the months removed whole. Their rows are out of the log when the call returns (detached,
   * counted, their hours marked stale); what is left is removing their tables' files, which takes as long as the
   * month is large (most of a second for 5 M rows here). With this, the call returns without waiting for it, and
   * `drop` settles once every such table is dropped, rejecting with the first failure (the next retention drops what
   * is left). Without it, the call waits for the drops and fails with their error.
   */
  dropInBackground?(drop: Promise<void>): void;
}

export const DEFAULT_BATCH_SIZE = 5_000;
/** How many connections a pass inside a month runs on at once, by default (TruncateOptions.connections). */
export const CUT_THROUGH_CONNECTIONS = 2;
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

const AGGREGATE = `count(*)::int as n, min(id) as first_id, max(id) as last_id, min(timestamp) as oldest, max(timestamp) as newest`;

function add(total: DoomedRows, part: DoomedRows): void {
  if (part.count === 0) return;
  total.count += part.count;
  if (total.firstId === null || (part.firstId !== null && BigInt(part.firstId) < BigInt(total.firstId))) total.firstId = part.firstId;
  if (total.lastId === null || (part.lastId !== null && BigInt(part.lastId) > BigInt(total.lastId))) total.lastId = part.lastId;
  if (!total.oldest || (part.oldest && part.oldest < total.oldest)) total.oldest = part.oldest;
  if (!total.newest || (part.newest && part.newest > total.newest)) total.newest = part.newest;
}

const none = (): DoomedRows => ({ count: 0, firstId: null, lastId: null, oldest: null, newest: null });

/**
 * Deletes the log rows beyond the newest `maxCount` and/or older than `maxDays` (or `all` of them), oldest month
 * first (inside a month, each of its two halves oldest first). The
 * log is partitioned by month (server/domain/log-partitions.ts): a month whose rows are all doomed, and which can get
 * no new rows (it ended before the call), leaves the log whole, in one short transaction whatever its size (counted
 * from the rollups), and its table is dropped after; inside the months the cut-offs cut through, rows are deleted in
 * batches along the cut-off's index so that no row lock is held long, the doomed range cut in two halves deleted at
 * once on two connections (docs/scaling.md, "Retention"). The
 * cut-offs are fixed once at the start: rows written meanwhile are kept. Idempotency keys stay (a retry with a key
 * still answers its redemption, without the log row) until they expire (IDEMPOTENCY_KEY_RETENTION_HOURS).
 * Returns what was deleted (with `dryRun`, what would be).
 */
export async function truncateLogs(
  pool: pg.Pool,
  policy: RetentionPolicy,
  options: TruncateOptions = {},
): Promise<DoomedRows> {
  validateRetentionPolicy(policy).throwIfAny();
  const batchSize = policy.batchSize ?? DEFAULT_BATCH_SIZE;
  const connections = Math.max(1, Math.floor(options.connections ?? CUT_THROUGH_CONNECTIONS));

  // The id of the newest row beyond maxCount (the id index, read backwards), the time limit, and the clock.
  const { rows: cut } = await pool.query(
    `select
       case when $3::boolean then (select max(id) from ${LOG_TABLE})
            when $1::int is null then null
            else (select id from ${LOG_TABLE} order by id desc offset $1::int limit 1) end as cutoff_id,
       case when $2::int is null then null else now() - make_interval(days => $2::int) end as cutoff_time,
       now() as now`,
    [policy.maxCount ?? null, policy.maxDays ?? null, policy.all === true],
  );
  const cutoffId: string | null = cut[0].cutoff_id === null ? null : String(cut[0].cutoff_id);
  const cutoffTime: Date | null = cut[0].cutoff_time;
  const now: Date = cut[0].now;
  const values: unknown[] = [];
  const doomed: string[] = [];
  if (cutoffId !== null) doomed.push(`id <= $${values.push(cutoffId)}`);
  if (cutoffTime !== null) doomed.push(`timestamp < $${values.push(cutoffTime)}`);
  if (doomed.length === 0) {
    // maxCount only, and the table holds no more than maxCount rows (or all, and the table is empty).
    options.onPlan?.({ ...none(), cutoffId, cutoffTime });
    return none();
  }
  const condition = doomed.join(' or ');

  if (options.dryRun || options.onPlan) {
    const { rows: planned } = await pool.query(`select ${AGGREGATE} from ${LOG_TABLE} where ${condition}`, values);
    const plan = rowsOf(planned[0]);
    options.onPlan?.({ ...plan, cutoffId, cutoffTime });
    if (options.dryRun || plan.count === 0) return plan;
  }

  // Each month, oldest first: dropped whole when every row is doomed and no new row can come (it ended before now),
  // else its doomed rows (if any) deleted in batches.
  const total = none();
  await dropRetired(pool);
  // A detached month's table is dropped on a connection of its own while the call goes on (the months after it, the
  // cut-through): freeing its files takes as long as the month is large, and overlaps the cut-through's batches
  // instead of adding to them. The call then waits for the drops, or hands them over (dropInBackground).
  let dropping: Promise<void> = Promise.resolve();
  let dropFailure: { error: unknown } | null = null;
  const dropSoon = (name: string) => {
    dropping = dropping.then(() => dropTable(pool, name)).catch((error) => void (dropFailure ??= { error }));
  };
  try {
    for (const partition of await listLogPartitions(pool)) {
      const whole = await wholeMonthDoomed(pool, partition, { cutoffId, cutoffTime, now }).catch(goneIsFalse);
      if (whole) {
        const distributed = await logIsDistributed(pool);
        const removed = await inTransaction(pool, async (client) => {
          // Months are created and dropped in turn, by every instance: another retention may have dropped this one.
          await client.query('select pg_advisory_xact_lock($1)', [UPKEEP_LOCK]);
          const { rows: still } = await client.query(
            `select 1 from pg_inherits where inhrelid = to_regclass($1) and inhparent = '${LOG_TABLE}'::regclass`,
            [`"${partition.name}"`],
          );
          if (still.length === 0) return 'gone' as const;
          // Counted under the detach's lock: nothing can be added between the count and the drop. A month doomed by the
          // count alone that got a newer row meanwhile (an import of old rows) stays, and is cut through below.
          await client.query(`alter table ${LOG_TABLE} detach partition "${partition.name}"`);
          const span: RemovedSpan = { ...(await monthRows(client, partition)), droppedPartition: partition.name };
          const byTime = cutoffTime !== null && partition.to <= cutoffTime;
          if (!byTime && span.lastId !== null && BigInt(span.lastId) > BigInt(cutoffId ?? 0)) return null;
          // Out of the log now; dropped once this commits, in a transaction of its own (dropTable, beside the rest
          // of the call): the drop's commit frees the month's files (hundreds of ms for a large month), and no lock on
          // the log or on api_client is held meanwhile. Its foreign key goes here, under the detach's lock on
          // api_client, so that the drop takes no lock but the month's own; renamed, so a month left behind by a crash
          // is unmistakably retention's.
          // On Citus the key stays, and goes with the table: Citus passes a detached month's ALTER TABLE … DROP
          // CONSTRAINT on to its shards under a name they do not have ("constraint …_fkey_102242 of relation
          // …_102242 does not exist"), and api_client is a reference table there.
          const { rows: keys } = distributed
            ? { rows: [] }
            : await client.query<{ name: string }>(
                `select conname as name from pg_constraint where conrelid = to_regclass($1) and contype = 'f'`,
                [`"${partition.name}"`],
              );
          for (const key of keys) await client.query(`alter table "${partition.name}" drop constraint "${key.name}"`);
          await client.query(`alter table "${partition.name}" rename to "${partition.name}${RETIRED}"`);
          if (span.oldest !== null) {
            // The usage rollups of the hours the month held are rebuilt (server/domain/usage-rollups.ts): marked in
            // this transaction, so statistics read them from the (now empty) log until the next compaction.
            await markStaleRange(client, span.oldest, new Date(span.newest!.getTime() + 1));
            await options.onRemoved?.(client, span);
          }
          return span;
        }, { undo: (span) => span === null });
        if (removed === 'gone') continue;
        if (removed) dropSoon(`${partition.name}${RETIRED}`);
        if (removed) {
          if (removed.count > 0) options.onBatch?.(removed);
          add(total, removed);
          continue;
        }
      }
      // Inside the month: one pass per cut-off, each along its own index (the time limit along `timestamp`, the count
      // limit along `id`), in batches whose bounds that index gives; a row doomed by both goes in the first pass.
      const passes: Cut[] = [];
      if (cutoffTime !== null && partition.from < cutoffTime) passes.push({ column: 'timestamp', below: cutoffTime, inclusive: false });
      if (cutoffId !== null && (await minIdWithin(pool, partition, cutoffId).catch(goneIsFalse))) {
        passes.push({ column: 'id', below: cutoffId, inclusive: true });
      }
      for (const pass of passes) {
        // The pass in segments, each on a connection of its own, run together (see splitPass).
        const at = (await logIsDistributed(pool)) ? 1 : connections;
        const segments = await splitPass(pool, partition.name, pass, batchSize, at).catch(goneIsNull);
        if (segments === null) break; // the month was dropped meanwhile (another retention)
        const done = await Promise.allSettled(
          segments.map(async (segment) => {
            let after = segment.after;
            for (;;) {
              const batch = await inTransaction(pool, async (client) => {
                const deleted = await deleteBatch(client, partition.name, segment, batchSize, after).catch(goneIsNull);
                if (deleted === null) return null;
                const span: RemovedSpan = { ...rowsOf(deleted.result.rows[0]), droppedPartition: null };
                if (span.count > 0) await options.onRemoved?.(client, span);
                after = deleted.bound;
                return span;
              });
              if (batch === null) break; // the month was dropped meanwhile (another retention)
              if (batch.count > 0) {
                options.onBatch?.(batch);
                add(total, batch);
              }
              if (batch.count < batchSize || after === null) break;
            }
          }),
        );
        const failed = done.find((d): d is PromiseRejectedResult => d.status === 'rejected');
        if (failed) throw failed.reason;
      }
    }
  } finally {
    const dropped = dropping.then(() => {
      if (dropFailure) throw (dropFailure as { error: unknown }).error;
    });
    if (options.dropInBackground) options.dropInBackground(dropped);
    else await dropped;
  }
  // The rows are out of the log either way; a month left undropped is dropped by the next retention (dropRetired).
  return total;
}

/**
 * Whether every row of a month is doomed and the month can get no new ones: it ended before the call (a month still
 * running, or ahead, is never dropped: redemptions write to it), and it ended before the time limit or its newest id
 * is within the count limit. An empty month is dropped only by the time limit.
 */
async function wholeMonthDoomed(
  pool: pg.Pool,
  partition: LogPartition,
  cut: { cutoffId: string | null; cutoffTime: Date | null; now: Date },
): Promise<boolean> {
  if (partition.to > cut.now) return false;
  if (cut.cutoffTime !== null && partition.to <= cut.cutoffTime) return true;
  if (cut.cutoffId === null) return false;
  const { rows } = await pool.query(`select max(id) as m from "${partition.name}"`);
  return rows[0].m !== null && BigInt(rows[0].m) <= BigInt(cut.cutoffId);
}

/** A month that no longer exists (42P01, undefined_table: dropped by another retention meanwhile). */
const isGone = (error: unknown) => (error as { code?: string } | null)?.code === '42P01';
function goneIsNull(error: unknown): null {
  if (isGone(error)) return null;
  throw error;
}
function goneIsFalse(error: unknown): false {
  if (isGone(error)) return false;
  throw error;
}

/** The suffix of a month detached by retention, out of the log, whose table is about to be dropped. */
const RETIRED = '_retired';

/** Another retention may be dropping the same month (dropRetired): gone is fine. */
async function dropTable(pool: pg.Pool, name: string): Promise<void> {
  await pool.query(`drop table if exists "${name}"`).catch(goneIsNull);
}

/**
 * Drops the months a previous retention detached but did not get to drop (it crashed, or lost its connection). A month
 * whose table is locked is being dropped already (by a retention that returned before its drop, or another
 * instance's): it is skipped, after a short lock timeout, rather than waited for.
 */
async function dropRetired(pool: pg.Pool): Promise<void> {
  const { rows } = await pool.query<{ name: string }>(
    `select c.relname as name from pg_class c
     where c.relkind = 'r' and c.relnamespace = current_schema()::regnamespace and c.relname like $1
       and not c.relispartition`,
    [`${LOG_TABLE}\\_y%${RETIRED}`],
  );
  for (const { name } of rows) {
    await inTransaction(pool, async (client) => {
      await client.query(`set local lock_timeout = ${RETIRED_LOCK_TIMEOUT_MS}`);
      await client.query(`drop table if exists "${name}"`);
    }).catch((error) => {
      if ((error as { code?: string } | null)?.code !== '55P03') goneIsNull(error);
    });
  }
}

/** How long dropRetired waits for the lock of a month's table that another drop holds (55P03 then: skipped). */
const RETIRED_LOCK_TIMEOUT_MS = 100;

/** One cut-off inside a month: the rows whose `column` is below it (or at it, when inclusive). */
interface Cut {
  column: 'timestamp' | 'id';
  below: Date | string;
  inclusive: boolean;
}

/** A stretch of a cut-off's pass: its rows above `after` (from its first doomed row when null). */
interface Segment extends Cut {
  after: string | null;
}

/**
 * A pass cut in `connections` segments of equal spans of its column, each deleted in its own batches on a
 * connection of its own, together: a DELETE's cost is its backend's CPU (each row's tuple marked and its WAL
 * record), so two connections cut through a day's rows in about half the time on two idle cores. The segments are
 * disjoint (the first takes up to the midpoint, the other starts past it), so each row goes once; each batch is still
 * its own short transaction marking its own hours stale (two batches marking the same hour: the second waits on the
 * first's commit, then marks nothing; only the midpoint's hour is marked by both halves). One segment when the pass
 * fits in one batch, and on Citus (truncateLogs asks for one there: a multi-shard DELETE already runs on every shard at
 * once, and Citus serializes such DELETEs on a table).
 */
async function splitPass(pool: pg.Pool, partition: string, cut: Cut, batchSize: number, connections: number): Promise<Segment[]> {
  if (connections < 2) return [{ ...cut, after: null }];
  const type = cut.column === 'id' ? 'bigint' : 'timestamptz';
  const doomed = `${cut.column} ${cut.inclusive ? '<=' : '<'} $1::${type}`;
  // Both from the cut-off's index: whether there is a second batch, and the first doomed value.
  const { rows } = await pool.query<{ more: boolean; first: string | null }>(
    `select exists (select from "${partition}" where ${doomed} order by ${cut.column} offset $2::int limit 1) as more,
       (select min(${cut.column})::text from "${partition}" where ${doomed}) as first`,
    [cut.below, batchSize],
  );
  if (!rows[0].more || rows[0].first === null) return [{ ...cut, after: null }];
  const segments: Segment[] = [];
  const { rows: points } = await pool.query<{ at: string }>(
    `select ($1::${type} + ($2::${type} - $1::${type}) * i / $3::int)::text as at from generate_series(1, $3::int - 1) i order by i`,
    [rows[0].first, cut.below, connections],
  );
  let after: string | null = null;
  for (const { at } of points) {
    segments.push({ column: cut.column, below: at, inclusive: true, after });
    after = at;
  }
  segments.push({ ...cut, after });
  return segments;
}

/**
 * One batch of a cut-off inside a month, in two statements: the batch's upper bound, the value of the batch-size-th
 * doomed row along the cut-off's own index (an index-only step; none when fewer rows are left), then the DELETE of the
 * range up to it by the same index, so that a batch costs what its rows cost, wherever it starts (rows sharing the
 * bound's value go together, so a batch may exceed the size). From the second batch on, `after` is the previous
 * batch's bound: every row up to it is gone, so both scans start past it instead of stepping over the index entries
 * of the rows just deleted (dead until a vacuum). The DELETE returns the batch's aggregate and marks stale the sealed
 * hours from its oldest row to its newest (server/domain/usage-rollups.ts). Two statements rather than a COALESCE of
 * the bound: Citus refuses a non-immutable function inside COALESCE in a DELETE.
 */
async function deleteBatch(
  client: pg.PoolClient,
  partition: string,
  cut: Cut,
  batchSize: number,
  after: string | null,
): Promise<{ result: pg.QueryResult<DoomedRow>; bound: string | null }> {
  // Bounds travel as text, so a timestamp keeps its microseconds (a JS Date would cut them, and a bound below the
  // batch's last row could end the batches early).
  const type = cut.column === 'id' ? 'bigint' : 'timestamptz';
  const values: unknown[] = [cut.below];
  const doomed = [`${cut.column} ${cut.inclusive ? '<=' : '<'} $1`];
  if (after !== null) doomed.push(`${cut.column} > $${values.push(after)}::${type}`);
  const { rows } = await client.query<{ at: string }>(
    `select ${cut.column}::text as at from "${partition}" where ${doomed.join(' and ')}
     order by ${cut.column} offset $${values.length + 1}::int - 1 limit 1`,
    [...values, batchSize],
  );
  const bound = rows.length > 0 ? rows[0].at : null;
  if (bound !== null) doomed.push(`${cut.column} <= $${values.push(bound)}::${type}`);
  const result = await client.query<DoomedRow>(
    `with deleted as (
       delete from "${partition}" where ${doomed.join(' and ')}
       returning id, timestamp
     ), span as (
       select ${AGGREGATE} from deleted
     ), marked as (
       ${markStaleSpanSql('span', 'oldest', 'newest')}
     )
     select * from span`,
    values,
  );
  return { result, bound };
}

/**
 * What a detached month held: its id and time range from its own indexes, and its number of rows from the hourly
 * rollups up to the compaction's watermark, counted in the month only where they do not hold it (stale hours up to
 * the watermark, everything from the watermark on): the exact count (the rollups' argument, server/domain/usage-rollups.ts, holds under
 * the detach's lock: no writer can reach the month), without reading millions of rows while the log is locked.
 */
async function monthRows(client: pg.PoolClient, partition: LogPartition): Promise<DoomedRows> {
  const month = `"${partition.name}"`;
  const { rows } = await client.query(
    `with w as (
       select $1::timestamptz as since, least($2::timestamptz,
         (select coalesce(max(compacted_until), '-infinity') from usage_rollup_state where id = 1)) as rolled
     )
     select (
         (select coalesce(sum(r.attempts), 0) from w, usage_rollup r
          where r.hour >= w.since and r.hour < w.rolled
            and not exists (select from usage_rollup_stale s where s.hour = r.hour))
         + (select count(*) from w cross join usage_rollup_stale s
              join ${month} l on l.timestamp >= s.hour and l.timestamp < least(s.hour + interval '1 hour', w.rolled)
            where s.hour >= w.since and s.hour < w.rolled)
         + (select count(*) from w, ${month} l where l.timestamp >= greatest(w.since, w.rolled))
       )::int as n,
       (select min(id) from ${month}) as first_id, (select max(id) from ${month}) as last_id,
       (select min(timestamp) from ${month}) as oldest, (select max(timestamp) from ${month}) as newest`,
    [partition.from, partition.to],
  );
  return rowsOf(rows[0]);
}

/** Whether a month holds a row within the count limit (its smallest id, from its id index). */
async function minIdWithin(pool: pg.Pool, partition: LogPartition, cutoffId: string): Promise<boolean> {
  const { rows } = await pool.query(`select min(id) as m from "${partition.name}"`);
  return rows[0].m !== null && BigInt(rows[0].m) <= BigInt(cutoffId);
}
