import type pg from 'pg';
import { STATS_STATEMENT_TIMEOUT_MS, STATUS_COLUMNS } from './usage-stats.js';
import { checkout } from '../database/checkout.js';

// Usage statistics per UTC hour, client, scope and outcome (table usage_rollup), rolled up from the log and the tokens
// by a compaction that runs off the request path (a timer in the service, `request-token rollups compact` for cron).
// usageStats and the listings' totals read what is compacted from here and everything else from the log, in one
// snapshot (server/domain/usage-stats.ts, log-counts.ts). Why the figures are exactly those of a full scan
// (docs/scaling.md, "Statistics"):
//
// - Two watermarks (usage_rollup_state), on whole minutes (SEAL_STEP): the rollup rows of an hour hold its rows
//   before `compacted_until`, so every hour before it has its rows and the hour it falls in (when it is not on the
//   hour) has rows for [the hour's start, compacted_until): readers take the rollups up to `compacted_until` and the
//   log from there. Rows written, changed or deleted with a timestamp before `sealed_until` must mark their hour stale
//   (usage_rollup_stale) in the same transaction. Statistics read stale hours from the log (up to `compacted_until`);
//   the compaction rebuilds them (up to `compacted_until` too).
// - The compaction raises `sealed_until` to a minute at least ROLLUP_LAG_MS in the past (and commits), then waits
//   until every transaction that began before that commit has ended. Only then does it roll up to it. A redemption,
//   refusal or issue stamps its row with its transaction's start (now()): if that transaction began before the seal,
//   the compaction waited for it and sees its row; if after, its timestamp is past the new watermark.
// - Rolling up [compacted_until, seal) adds to the rows of the hour compacted_until falls in (INSERT … ON CONFLICT
//   adding the counts, under the state row's lock: they hold exactly [its start, compacted_until)) and writes those of
//   the hours after it, so each run reads only the rows since the last one.
// - Writers of rows with times of their own (the batched refusal log, the Django import, retention, late status
//   updates) mark the hours they touch when those are sealed. A transaction that began after the seal sees it; one that
//   began before was waited for, so its rows are in the compaction's snapshot.
// - Rebuilding a stale hour deletes its mark, then (in later statements of the same transaction) reads the hour again.
//   A writer whose mark was deleted had committed before the delete's snapshot; a writer marking the hour meanwhile
//   waits on the deleted mark's row lock and inserts its mark again after the rebuild commits.

/** A minute is rolled up once it ended this long ago (database clock), so that refusals flushed late rarely mark it. */
export const ROLLUP_LAG_MS = 5 * 60_000;
/**
 * The watermarks move by whole minutes (date_trunc's 'minute'): the live part that statistics and totals read from the
 * log is ROLLUP_LAG_MS, up to a minute, and up to the compaction's interval, wherever in the hour the request falls.
 */
const SEAL_STEP = 'minute';
/** Hours rolled up per transaction. */
const CHUNK_HOURS = 24;
/** Stale hours rebuilt per transaction. */
const STALE_BATCH = 168;
/** The session advisory lock that keeps compactions of several instances (or the CLI) from running at once. */
export const COMPACTION_LOCK = 7_204_917_311;
const HOUR_MS = 3_600_000;

/** Anything that runs a statement: a pool, a pool's client or a client. */
export interface Queryable {
  query<R extends pg.QueryResultRow = any>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/**
 * An INSERT (usable as a data-modifying CTE) marking stale the sealed hours of the timestamps in `column` of
 * `relation`: for statements that write, change or delete log rows or tokens with times of their own.
 * E.g. `with deleted as (delete from request_token_log … returning timestamp), marked as (${markStaleSql('deleted',
 * 'timestamp')}) select …`.
 */
export const markStaleSql = (relation: string, column: string) =>
  `insert into usage_rollup_stale (hour)
     select distinct date_trunc('hour', ${column}, 'UTC') from ${relation}
     where ${column} < (select sealed_until from usage_rollup_state where id = 1)
     on conflict do nothing`;

/**
 * An INSERT (usable as a data-modifying CTE) marking stale every sealed hour from `oldest` to `newest` (columns of the
 * one-row `relation`): for a batch that removed rows between those times, one statement whatever the batch's size.
 * Hours in between that lost no row are marked too, which costs a rebuild and changes no figure.
 */
export const markStaleSpanSql = (relation: string, oldest: string, newest: string) =>
  `insert into usage_rollup_stale (hour)
     select h from ${relation} x, usage_rollup_state s,
       generate_series(date_trunc('hour', x.${oldest}, 'UTC'), date_trunc('hour', x.${newest}, 'UTC'), interval '1 hour') as h
     where s.id = 1 and h < s.sealed_until
     on conflict do nothing`;

const hoursOf = (times: Date[]) =>
  [...new Set(times.map((t) => Math.floor(t.getTime() / HOUR_MS) * HOUR_MS))].map((h) => new Date(h));

/** Marks stale the sealed hours these times fall in (already written rows; same transaction as the write). */
export async function markStaleTimes(db: Queryable, times: Date[]): Promise<void> {
  if (times.length === 0) return;
  await db.query(`${markStaleSql('unnest($1::timestamptz[]) as t(at)', 't.at')}`, [hoursOf(times)]);
}

/**
 * markStaleTimes as a statement without parameters (the hours written as literals), so that it can share one round
 * trip with the statements around it (`…; commit`); null for no times.
 */
export function markStaleTimesSql(times: Date[]): string | null {
  if (times.length === 0) return null;
  const hours = hoursOf(times).map((h) => h.toISOString());
  return markStaleSql(`unnest('{${hours.join(',')}}'::timestamptz[]) as t(at)`, 't.at');
}

/**
 * Marks stale every sealed hour that overlaps [since, until) and may hold rows or rollups: for whole ranges written
 * or removed at once (a dropped partition, an import), in the transaction that does it. `rollups rebuild` uses it too.
 */
export async function markStaleRange(db: Queryable, since: Date | null, until: Date | null): Promise<number> {
  // Null: open-ended. The lower bound is raised to the oldest hour with rows or rollups, the upper one lowered to the
  // seal, so an open range marks only hours that can hold something.
  const { rowCount } = await db.query(
    `with bounds as (
       select date_trunc('hour', greatest(coalesce($1::timestamptz, '-infinity'), least(
           (select min(hour) from usage_rollup),
           (select min(timestamp) from request_token_log),
           (select min(issued_at) from request_token))), 'UTC') as lo,
         least(coalesce($2::timestamptz, 'infinity'), s.sealed_until) as hi,
         least((select min(hour) from usage_rollup), (select min(timestamp) from request_token_log),
           (select min(issued_at) from request_token)) as oldest
       from usage_rollup_state s where s.id = 1 and s.sealed_until is not null
     )
     insert into usage_rollup_stale (hour)
     select h from bounds b, generate_series(b.lo, b.hi - interval '1 microsecond', interval '1 hour') as h
     where b.oldest is not null and b.lo < b.hi
     on conflict do nothing`,
    [since, until],
  );
  return rowCount ?? 0;
}

/** Ranges of time as two arrays (lower bounds, upper bounds) for the statements below. */
type Ranges = [Date[], Date[]];

const ROLLUP_COUNTS = [
  ['attempts', 'true'],
  ['released', 'a.released_at is not null'],
  ...STATUS_COLUMNS.map(([, condition, column]) => [column, condition]),
] as const;

/**
 * Rolls up the log rows and tokens of the ranges ($1, $2): the hours starting in them had their rollup rows deleted
 * first; the rows of an hour that began before a range (the hour compacted_until falls in) hold that hour up to the
 * range's start, and the range's counts are added to them. $3 and $4 bound all the ranges: the planner cannot see into
 * the arrays (it guesses a good part of the log), and would make a hash join over every token for a minute's rows
 * (85 ms with 220,000 tokens); the bounds let it estimate the rows and look their tokens up by primary key.
 */
const ROLLUP_INSERT_SQL = `insert into usage_rollup
     (hour, client_id, scope, error_code, ${ROLLUP_COUNTS.map(([column]) => column).join(', ')}, issued)
   select hour, client_id, scope, error_code, ${ROLLUP_COUNTS.map(([column]) => `sum(${column})::int`).join(', ')},
     sum(issued)::int
   from (
     select date_trunc('hour', a.timestamp, 'UTC') as hour, coalesce(a.client_id, 0) as client_id,
       coalesce(a.scope, '') as scope, coalesce(a.error_code, '') as error_code,
       ${ROLLUP_COUNTS.map(([column, condition]) => `count(*) filter (where ${condition}) as ${column}`).join(', ')},
       0 as issued
     from (
       select l.timestamp, l.client_id, t.scope, l.error_code, l.status_code, l.released_at
       from unnest($1::timestamptz[], $2::timestamptz[]) as v(lo, hi)
         join request_token_log l on l.timestamp >= v.lo and l.timestamp < v.hi
           and l.timestamp >= $3::timestamptz and l.timestamp < $4::timestamptz
         left join request_token t on t.id = l.token_id
       offset 0
     ) a
     group by 1, 2, 3, 4
     union all
     select date_trunc('hour', t.issued_at, 'UTC'), t.client_id, t.scope, '', ${ROLLUP_COUNTS.map(() => '0').join(', ')},
       count(*)
     from unnest($1::timestamptz[], $2::timestamptz[]) as v(lo, hi)
       join request_token t on t.issued_at >= v.lo and t.issued_at < v.hi
         and t.issued_at >= $3::timestamptz and t.issued_at < $4::timestamptz
     group by 1, 2, 3
   ) x
   group by 1, 2, 3, 4
   on conflict (hour, client_id, scope, error_code) do update set
     ${[...ROLLUP_COUNTS.map(([column]) => column), 'issued'].map((c) => `${c} = usage_rollup.${c} + excluded.${c}`).join(', ')}`;

/**
 * The days (UTC) that the ranges touch and that end by the watermark $3, as day rows (usage_rollup_day) are kept only
 * for days whose 24 hours are all compacted.
 */
const WHOLE_DAYS_SQL = `select distinct d.day
   from unnest($1::timestamptz[], $2::timestamptz[]) as v(lo, hi),
     generate_series(date_trunc('day', v.lo, 'UTC'), v.hi - interval '1 microsecond', interval '24 hours') as d(day)
   where v.lo < v.hi and d.day + interval '24 hours' <= $3::timestamptz`;

/**
 * Rolls up the log rows and tokens of the ranges (each from an hour's start, or from the old watermark, to the new
 * one or to an hour's end) again, and then the days they touch that are whole below the watermark `compactedUntil`
 * (after the step): each such day's rows are the sums of its hourly rows, written in the same transaction as those, so
 * that the two levels never disagree in any snapshot. The rows of hours starting in a range are replaced; an hour that
 * began before its range gets the range's counts added (ROLLUP_INSERT_SQL).
 */
async function rollUp(client: pg.PoolClient, ranges: Ranges, compactedUntil: Date): Promise<void> {
  await client.query(
    `delete from usage_rollup r using unnest($1::timestamptz[], $2::timestamptz[]) as v(lo, hi)
     where r.hour >= v.lo and r.hour < v.hi`,
    ranges,
  );
  const [los, his] = ranges;
  const bounds = [new Date(Math.min(...los.map(Number))), new Date(Math.max(...his.map(Number)))];
  await client.query(ROLLUP_INSERT_SQL, [...ranges, ...bounds]);
  const columns = ['attempts', 'released', ...STATUS_COLUMNS.map(([, , column]) => column), 'issued'];
  const days = [...ranges, compactedUntil];
  await client.query(`delete from usage_rollup_day r where r.day in (${WHOLE_DAYS_SQL})`, days);
  await client.query(
    `insert into usage_rollup_day (day, client_id, scope, error_code, ${columns.join(', ')})
     select days.day, r.client_id, r.scope, r.error_code, ${columns.map((c) => `sum(r.${c})::int`).join(', ')}
     from (${WHOLE_DAYS_SQL}) days join usage_rollup r on r.hour >= days.day and r.hour < days.day + interval '24 hours'
     group by days.day, r.client_id, r.scope, r.error_code`,
    days,
  );
}

export interface CompactionOptions {
  /** How long ago an hour must have ended to be rolled up; default ROLLUP_LAG_MS. (Tests pass less, even < 0.) */
  lagMs?: number;
  /** How long to wait for transactions older than the seal; past it the watermark stays (default 60 s). */
  maxWaitMs?: number;
  /** Statement timeout inside the compaction's transactions (default STATS_STATEMENT_TIMEOUT_MS). */
  statementTimeoutMs?: number;
  /** Stops between steps (shutdown). */
  signal?: AbortSignal;
  /** When another compaction holds the lock, wait this long for it rather than skip (default 0: skip). */
  waitForLockMs?: number;
}

export interface CompactionResult {
  /** Another instance (or the CLI) was compacting: nothing was done. */
  skipped: boolean;
  /** Minutes rolled up past the old watermark (empty ones included). */
  minutes: number;
  /** Stale hours rebuilt. */
  rebuilt: number;
  /** The watermark afterwards (null: nothing rolled up yet). */
  compactedUntil: Date | null;
  /** Transactions older than the seal were still running after maxWaitMs: the watermark did not move this time. */
  waitedOut: boolean;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref());

/**
 * One compaction: seals, waits for older transactions, rolls up to the seal (a day per transaction) and rebuilds the
 * stale hours. Safe to run from several processes at once: all but one skip (advisory lock).
 */
export async function compactRollups(pool: pg.Pool, options: CompactionOptions = {}): Promise<CompactionResult> {
  const lagMs = options.lagMs ?? ROLLUP_LAG_MS;
  const maxWaitMs = options.maxWaitMs ?? 60_000;
  const timeout = Math.round(options.statementTimeoutMs ?? STATS_STATEMENT_TIMEOUT_MS);
  const result: CompactionResult = { skipped: false, minutes: 0, rebuilt: 0, compactedUntil: null, waitedOut: false };
  const client = await checkout(pool);
  let locked = false;
  const inTransaction = async <T>(work: () => Promise<T>): Promise<T> => {
    await client.query('begin');
    try {
      await client.query(`set local statement_timeout = ${timeout}`);
      const value = await work();
      await client.query('commit');
      return value;
    } catch (error) {
      await client.query('rollback').catch(() => {});
      throw error;
    }
  };
  try {
    const lockDeadline = Date.now() + (options.waitForLockMs ?? 0);
    for (;;) {
      ({ rows: [{ locked }] } = await client.query('select pg_try_advisory_lock($1) as locked', [COMPACTION_LOCK]));
      if (locked) break;
      if (Date.now() >= lockDeadline || options.signal?.aborted) return { ...result, skipped: true };
      await sleep(100);
    }

    // The seal, committed on its own: from here on, writers of older rows mark their hours.
    const { rows: [sealed] } = await client.query<{ target: Date; compacted_until: Date | null }>(
      `update usage_rollup_state
       set sealed_until = greatest(sealed_until, date_trunc('${SEAL_STEP}', now() - $1 * interval '1 millisecond', 'UTC'))
       where id = 1
       returning date_trunc('${SEAL_STEP}', now() - $1 * interval '1 millisecond', 'UTC') as target, compacted_until`,
      [lagMs],
    );
    const target = sealed.target;
    result.compactedUntil = sealed.compacted_until;

    if (sealed.compacted_until === null || sealed.compacted_until < target) {
      // Every transaction that began before the seal was committed must end first: it may still write rows stamped
      // before the new watermark (its now()), or rows of its own times without having seen the seal.
      const { rows: [{ sealedAt }] } = await client.query(`select clock_timestamp()::text as "sealedAt"`);
      const deadline = Date.now() + maxWaitMs;
      for (;;) {
        const { rows: [{ older }] } = await client.query(
          `select count(*)::int as older from pg_stat_activity
           where datname = current_database() and backend_type = 'client backend' and pid <> pg_backend_pid()
             and xact_start < $1::timestamptz`,
          [sealedAt],
        );
        if (older === 0) break;
        if (Date.now() >= deadline || options.signal?.aborted) {
          result.waitedOut = true;
          break;
        }
        await sleep(100);
      }

      while (!result.waitedOut && !options.signal?.aborted) {
        const step = await inTransaction(async () => {
          const { rows: [state] } = await client.query<{ compacted_until: Date | null }>(
            'select compacted_until from usage_rollup_state where id = 1 for update',
          );
          if (state.compacted_until !== null && state.compacted_until >= target) return null;
          // The first hour at or after the watermark that holds anything: empty stretches are skipped at once. (A
          // statement of its own: on Citus the log and the tokens are distributed, the state a table on the
          // coordinator, and Citus refuses a statement that joins the two kinds.)
          const { rows: [first] } = await client.query<{ next: Date | null }>(
            `select date_trunc('hour', least(
                 (select min(timestamp) from request_token_log where timestamp >= $1),
                 (select min(issued_at) from request_token where issued_at >= $1)
               ), 'UTC') as next`,
            [state.compacted_until ?? '-infinity'],
          );
          const next = first.next === null || first.next > target ? target : first.next;
          // From the watermark (which may fall inside an hour: that hour's rows hold it up to there, and this step's
          // counts are added to them), or from the first hour that holds anything.
          const from = state.compacted_until ?? next;
          const until = new Date(Math.min(next.getTime() + CHUNK_HOURS * HOUR_MS, target.getTime()));
          // [from, next) holds nothing: it is rolled up (to no rows) in the same step.
          if (from < until) await rollUp(client, [[from], [until]], until);
          await client.query('update usage_rollup_state set compacted_until = $1 where id = 1', [until]);
          return { from, until };
        });
        if (step === null) break;
        result.minutes += (step.until.getTime() - step.from.getTime()) / 60_000;
        result.compactedUntil = step.until;
      }
    }

    while (!options.signal?.aborted) {
      const hours = await inTransaction(async () => {
        const { rows } = await client.query<{ hour: Date }>(
          `delete from usage_rollup_stale where hour in (
             select hour from usage_rollup_stale
             where hour < (select coalesce(compacted_until, '-infinity') from usage_rollup_state where id = 1)
             order by hour limit $1)
           returning hour`,
          [STALE_BATCH],
        );
        const marked = rows.map((r) => r.hour);
        if (marked.length > 0) {
          const [{ compacted_until }] = (
            await client.query<{ compacted_until: Date }>('select compacted_until from usage_rollup_state where id = 1')
          ).rows;
          // Each hour up to its end, or up to the watermark for the hour it falls in.
          const ends = marked.map((h) => new Date(Math.min(h.getTime() + HOUR_MS, compacted_until.getTime())));
          await rollUp(client, [marked, ends], compacted_until);
        }
        return marked;
      });
      result.rebuilt += hours.length;
      if (hours.length < STALE_BATCH) break;
    }
    return result;
  } finally {
    if (locked) await client.query('select pg_advisory_unlock($1)', [COMPACTION_LOCK]).catch(() => {});
    client.release();
  }
}

/**
 * Rolls [since, until) up again from the log and the tokens (both default to everything): marks its sealed hours
 * stale and compacts, waiting up to 5 minutes for a compaction running elsewhere (unless `waitForLockMs` says
 * otherwise). For rows written behind the service's back (a restore, a hand-made import, a benchmark's seed).
 */
export async function rebuildRollups(
  pool: pg.Pool,
  range: { since?: Date | null; until?: Date | null },
  options: CompactionOptions = {},
): Promise<CompactionResult & { marked: number }> {
  const marked = await markStaleRange(pool, range.since ?? null, range.until ?? null);
  return { ...(await compactRollups(pool, { waitForLockMs: 5 * 60_000, ...options })), marked };
}

export interface RollupCompactor {
  /** Compacts now and then every `intervalMs` (an unref'd timer). */
  start(): void;
  /** Runs one compaction now, or joins the one running. */
  run(): Promise<CompactionResult | null>;
  /** Stops the timer and waits for a running compaction (told to stop between steps). */
  stop(): Promise<void>;
}

/** The service's compaction timer: `intervalMs` 0 never starts one (compact from cron with the CLI instead). */
export function createRollupCompactor(
  pool: pg.Pool,
  options: { intervalMs: number; onError(message: string, error?: unknown): void; onDone?(result: CompactionResult): void },
): RollupCompactor {
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<CompactionResult | null> | null = null;
  const abort = new AbortController();
  const run = () =>
    (running ??= compactRollups(pool, { signal: abort.signal })
      .then((result) => {
        options.onDone?.(result);
        return result;
      })
      .catch((error) => {
        options.onError('compacting the usage rollups failed', error);
        return null;
      })
      .finally(() => {
        running = null;
      }));
  return {
    start() {
      if (timer || options.intervalMs <= 0 || abort.signal.aborted) return;
      void run();
      timer = setInterval(() => void run(), options.intervalMs);
      timer.unref();
    },
    run,
    async stop() {
      if (timer) clearInterval(timer);
      timer = null;
      abort.abort();
      await running;
    },
  };
}
