import { inTransaction } from '../database/transaction.js';
import type pg from 'pg';
import { logIsDistributed } from './citus.js';
import { ERROR_CODES, Issues, type ErrorCode } from './errors.js';
import type { Tenant } from './api-keys.js';
import { MAX_SCOPE_LENGTH } from './tokens.js';
import { checkString } from './validation.js';

export const STATS_BUCKETS = ['HOUR', 'DAY'] as const;
export type StatsBucket = (typeof STATS_BUCKETS)[number];

/** Buckets are cut on UTC boundaries (midnight UTC for DAY), whatever the server's or the database's time zone. */
export const STATS_TIME_ZONE = 'UTC';
const BUCKET_MS: Record<StatsBucket, number> = { HOUR: 3_600_000, DAY: 86_400_000 };
/** Without `since`: the last 48 hours by the hour, the last 30 days by the day (the current bucket included). */
const DEFAULT_BUCKETS: Record<StatsBucket, number> = { HOUR: 48, DAY: 30 };
export const MAX_STATS_BUCKETS = 1_000;
/**
 * Statistics read the log for what the rollups do not hold: the window's edges and the hours since the last
 * compaction, but everything before the first one (scanning 30 days of 670,000 attempts took about 2 s on a loaded
 * 2-core machine), so they get more time than the pool's statement timeout allows the hot paths.
 */
export const STATS_STATEMENT_TIMEOUT_MS = 60_000;

export interface UsageFilter {
  scope?: string | null;
  since?: Date | null;
  until?: Date | null;
}

export interface ResponseStatusCounts {
  status1xx: number;
  status2xx: number;
  status3xx: number;
  status4xx: number;
  status5xx: number;
  /** Attempts for which the client application has not recorded a status. */
  unrecorded: number;
}

export interface UsageCounts {
  issued: number;
  /** Successful redemptions, including those whose use was later released. */
  redemptions: number;
  /** Redemptions whose use went back to the token (recordResponseStatus with releaseUse). */
  released: number;
  refusals: number;
  /** Codes with at least one refusal, most frequent first. */
  refusalsByCode: { code: ErrorCode; count: number }[];
  responseStatuses: ResponseStatusCounts;
}

export interface UsageBucket extends UsageCounts {
  start: Date;
  end: Date;
}

export interface ScopeUsage extends UsageCounts {
  /** Null for refusals whose JWT could not be tied to a stored token (malformed, bad signature, unknown id). */
  scope: string | null;
}

export interface UsageStats {
  bucket: StatsBucket;
  timeZone: string;
  since: Date;
  until: Date;
  buckets: UsageBucket[];
  totals: UsageCounts;
  scopes: ScopeUsage[];
}

export interface StatsDeps {
  pool: pg.Pool;
  /** The caller's client (null: an admin key, every client). */
  tenant: Tenant;
}

const floorTo = (at: Date, bucket: StatsBucket) => new Date(Math.floor(at.getTime() / BUCKET_MS[bucket]) * BUCKET_MS[bucket]);

/** The time window: `until` defaults to now; `since` to the start of the bucket DEFAULT_BUCKETS - 1 buckets earlier. */
export function statsWindow(filter: UsageFilter, bucket: StatsBucket, now: Date, issues: Issues) {
  const size = BUCKET_MS[bucket];
  const until = filter.until ?? now;
  const since = filter.since ?? new Date(floorTo(until, bucket).getTime() - (DEFAULT_BUCKETS[bucket] - 1) * size);
  if (since >= until) issues.add(['filter', 'until'], 'must be after since');
  const first = Math.floor(since.getTime() / size);
  const last = Math.ceil(until.getTime() / size);
  if (last - first > MAX_STATS_BUCKETS) {
    issues.add(
      ['filter', 'since'],
      `the window spans more than ${MAX_STATS_BUCKETS} buckets: choose a larger bucket or a shorter window`,
    );
  }
  return { since, until, first, last, size };
}

const emptyCounts = (): UsageCounts => ({
  issued: 0,
  redemptions: 0,
  released: 0,
  refusals: 0,
  refusalsByCode: [],
  responseStatuses: { status1xx: 0, status2xx: 0, status3xx: 0, status4xx: 0, status5xx: 0, unrecorded: 0 },
});

// Counting happens in PostgreSQL. Whole hours that the compaction has rolled up (server/domain/usage-rollups.ts) are
// read from `usage_rollup`; everything else in the window (the partial hours at its edges, the hours after the
// compaction's watermark, hours marked stale) from the log and the tokens, over the same snapshot. Both feed one list
// of facts, grouped twice with GROUPING SETS: by bucket and by scope. Node only copies the counts over.
/** Each status class: its condition on a log row (alias `a`) and its column in `usage_rollup`. */
export const STATUS_COLUMNS: [keyof ResponseStatusCounts, string, string][] = [
  ['status1xx', 'a.status_code < 200', 'status_1xx'],
  ['status2xx', 'a.status_code between 200 and 299', 'status_2xx'],
  ['status3xx', 'a.status_code between 300 and 399', 'status_3xx'],
  ['status4xx', 'a.status_code between 400 and 499', 'status_4xx'],
  ['status5xx', 'a.status_code >= 500', 'status_5xx'],
  ['unrecorded', 'a.status_code is null', 'unrecorded'],
];
/** A row of usageStatsQuery: one bucket, or one scope's totals (`per_scope`), with its counts. */
type StatsRow = {
  per_scope: boolean;
  scope: string | null;
  bucket_start: Date | string;
  issued: number;
  redemptions: number;
  released: number;
  refusals: number;
} & Record<keyof ResponseStatusCounts, number> &
  Record<`code_${(typeof ERROR_CODES)[number]}`, number>;

const HOUR_MS = BUCKET_MS.HOUR;

/**
 * The whole UTC hours inside [since, until): [first, last). A window inside one hour has none (both are `since`), so
 * that the statement reads all of it from the log.
 */
export function wholeHours(since: Date, until: Date): { first: Date; last: Date } {
  const first = Math.ceil(since.getTime() / HOUR_MS) * HOUR_MS;
  const last = Math.floor(until.getTime() / HOUR_MS) * HOUR_MS;
  return first < last ? { first: new Date(first), last: new Date(last) } : { first: since, last: since };
}

const DAY_MS = BUCKET_MS.DAY;

/**
 * The whole UTC days inside the whole hours [first, last): [firstDay, lastDay), read from the daily rollups when the
 * buckets are days cut at midnight UTC. None (both `first`) otherwise: the buckets are hours, which a day's rows
 * cannot be split into, or days of another time zone, which UTC days do not line up with.
 */
export function wholeDays(bucket: StatsBucket, first: Date, last: Date): { firstDay: Date; lastDay: Date } {
  const firstDay = Math.ceil(first.getTime() / DAY_MS) * DAY_MS;
  const lastDay = Math.floor(last.getTime() / DAY_MS) * DAY_MS;
  return bucket === 'DAY' && STATS_TIME_ZONE === 'UTC' && firstDay < lastDay
    ? { firstDay: new Date(firstDay), lastDay: new Date(lastDay) }
    : { firstDay: first, lastDay: first };
}

/**
 * The filters of the statements below, on the rollups (r), the log (l), the log rows with their token's scope (a) and
 * the tokens (t).
 */
function statsFilters(values: unknown[], tenant: Tenant, scope: string | null) {
  const param = (v: unknown) => `$${values.push(v)}`;
  const rollup: string[] = [];
  const log: string[] = [];
  const attempt: string[] = [];
  const token: string[] = [];
  // The tokens issued in a range of time (v.lo, v.hi). With a scope, as a range of the (scope, issued_at) index: the
  // same tokens (the scope equal, the time in the range), but a condition no other index can take, where the planner,
  // not knowing the range's length, would rather read every token in the range through the issued_at index.
  let tokenRange = 't.issued_at >= v.lo and t.issued_at < v.hi';
  if (tenant !== null) {
    const client = param(tenant);
    rollup.push(`r.client_id = ${client}`);
    log.push(`l.client_id = ${client}`);
    token.push(`t.client_id = ${client}`);
  }
  if (scope !== null) {
    const scopeParam = param(scope);
    rollup.push(`r.scope = ${scopeParam}`);
    attempt.push(`a.scope = ${scopeParam}`);
    tokenRange = `(t.scope, t.issued_at) >= (${scopeParam}, v.lo) and (t.scope, t.issued_at) < (${scopeParam}, v.hi)`;
  }
  const and = (conditions: string[]) => conditions.map((c) => ` and ${c}`).join('');
  return { rollup: and(rollup), log: and(log), attempt: and(attempt), tokenRange, token: and(token) };
}

/**
 * The statement behind usageStats: per bucket and per scope, the attempts in the window and the tokens issued in it,
 * from the rollups up to the compaction's watermark and from the log and the tokens elsewhere. Gives exactly what
 * usageStatsScanQuery gives (test/usage-rollups.test.ts). Exported for the bench's baseline, which runs the same SQL
 * (bench/sql.ts).
 */
export function usageStatsQuery(bucket: StatsBucket, since: Date, until: Date, tenant: Tenant, scope: string | null) {
  const { first, last } = wholeHours(since, until);
  const { firstDay, lastDay } = wholeDays(bucket, first, last);
  const values: unknown[] = [bucket.toLowerCase(), since, until, STATS_TIME_ZONE, first, last, firstDay, lastDay];
  const where = statsFilters(values, tenant, scope);
  const counts = [
    'coalesce(sum(f.issued), 0)::int as issued',
    'coalesce(sum(f.attempts) filter (where f.error_code is null), 0)::int as redemptions',
    'coalesce(sum(f.released), 0)::int as released',
    'coalesce(sum(f.attempts) filter (where f.error_code is not null), 0)::int as refusals',
    ...STATUS_COLUMNS.map(([name, , column]) => `coalesce(sum(f.${column}), 0)::int as "${name}"`),
    ...ERROR_CODES.map((code) => `coalesce(sum(f.attempts) filter (where f.error_code = '${code}'), 0)::int as "code_${code}"`),
  ];
  const statusColumns = STATUS_COLUMNS.map(([, , column]) => column);
  /** One source of rollup rows (alias r), each pre-grouped by bucket, scope and outcome. */
  const rolledUp = (time: string, from: string, condition: string) =>
    `select date_trunc($1, ${time} at time zone $4) at time zone $4 as bucket_start, nullif(r.scope, '') as scope,
           nullif(r.error_code, '') as error_code, sum(r.attempts) as attempts, sum(r.released) as released,
           ${statusColumns.map((c) => `sum(r.${c}) as ${c}`).join(', ')}, sum(r.issued) as issued
         from ${from}
         where ${condition}${where.rollup}
         group by 1, 2, 3`;
  const text = `with w as (
         select s.compacted, s.stale, s.days_end,
           -- The whole days holding a stale hour: read hour by hour (the stale hour from the log).
           array(
             select distinct date_trunc('day', h, 'UTC') from unnest(s.stale) as h where h >= $7::timestamptz and h < s.days_end
           ) as stale_days
         from (
           select c.compacted, c.stale,
             -- Days [$7, days_end) have their day rows: those whose 24 hours are all compacted.
             greatest($7::timestamptz, least($8::timestamptz, date_trunc('day', c.compacted, 'UTC'))) as days_end
           from (
             select coalesce((select compacted_until from usage_rollup_state where id = 1), '-infinity') as compacted,
               -- The stale hours among the window's whole ones: an array, a few at most between compactions.
               array(
                 select s.hour from usage_rollup_stale s where s.hour >= $5::timestamptz and s.hour < $6::timestamptz
               ) as stale
           ) c
         ) s
       ), hourly as (
         -- What the day rows do not answer and the hourly rows do (up to the watermark): the whole hours before the
         -- first whole day and after the last one the day rows hold, and the days with a stale hour.
         select $5::timestamptz as lo, $7::timestamptz as hi
         union all
         select w.days_end, $6::timestamptz from w
         union all
         select d.day, d.day + interval '24 hours' from w, unnest(w.stale_days) as d(day)
       ), live as (
         -- What the rollups do not answer: the partial hour at the start, everything from the last whole hour or the
         -- compaction's watermark (whichever comes first) to the end, and the stale hours between.
         select $2::timestamptz as lo, $5::timestamptz as hi where $2::timestamptz < $5::timestamptz
         union all
         select greatest($5::timestamptz, least($6::timestamptz, w.compacted)), $3::timestamptz from w
         union all
         -- (A stale hour up to the watermark, where the range before ends: the hour it falls in, when not on the hour.)
         select s.hour, least(s.hour + interval '1 hour', w.compacted) from w, unnest(w.stale) as s(hour)
         where s.hour < w.compacted
       ), tail as materialized (
         -- The log rows of those ranges, and each row's scope. The planner cannot know how many rows the ranges hold
         -- (it guesses a good part of the log), so nothing here is left to a join it could turn into a hash join
         -- reading every token: each range is its own subquery (offset 0 keeps it one) read by the log's timestamp
         -- index, and each row's scope is a lookup by the token's primary key (token 0, or none: null, as a left join
         -- gives). Materialized, so that the scope filter below does not run the lookup twice.
         select l.timestamp, l.error_code, l.released_at, l.status_code,
           (select t.scope from request_token t where t.id = l.token_id) as scope
         from live v cross join lateral (
           select l.timestamp, l.token_id, l.error_code, l.released_at, l.status_code from request_token_log l
           where l.timestamp >= v.lo and l.timestamp < v.hi${where.log}
           offset 0
         ) l
       ), facts as (
         -- Each source grouped by bucket, scope and outcome first, so that the grouping sets below add up a few rows
         -- per bucket rather than every rollup row, log row and token. Buckets are cut as date_trunc($1, x, $4) cuts
         -- them (the full scan's), but through "at time zone": the same instants, without looking the zone up again
         -- for every row (half the time).
         ${rolledUp('r.day', 'usage_rollup_day r, w', 'r.day >= $7::timestamptz and r.day < w.days_end and r.day <> all(w.stale_days)')}
         union all
         -- The hourly rows of each range by the primary key's leading hour, below the watermark, stale hours left out.
         ${rolledUp('r.hour', `w cross join hourly h cross join lateral (
             select r.* from usage_rollup r
             where r.hour >= h.lo and r.hour < least(h.hi, w.compacted) and r.hour <> all(w.stale)${where.rollup}
             offset 0
           ) r`, 'true')}
         union all
         select date_trunc($1, a.timestamp at time zone $4) at time zone $4, a.scope, a.error_code, count(*),
           count(*) filter (where a.released_at is not null),
           ${STATUS_COLUMNS.map(([, condition]) => `count(*) filter (where ${condition})`).join(', ')}, 0
         from tail a
         where true${where.attempt}
         group by 1, 2, 3
         union all
         -- The tokens issued in the ranges, each range by the (scope, issued_at) or the issued_at index.
         select date_trunc($1, t.issued_at at time zone $4) at time zone $4, t.scope, null, 0, 0,
           ${statusColumns.map(() => '0').join(', ')}, count(*)
         from live v cross join lateral (
           select t.issued_at, t.scope from request_token t
           where ${where.tokenRange}${where.token}
           offset 0
         ) t
         group by 1, 2
       )
       select grouping(f.bucket_start) = 1 as per_scope, f.bucket_start, f.scope, ${counts.join(', ')}
       from facts f
       group by grouping sets ((f.bucket_start), (f.scope))`;
  return { text, values };
}

const ATTEMPT_COLUMNS: [string, string][] = [
  ['redemptions', 'a.error_code is null'],
  ['released', 'a.released_at is not null'],
  ['refusals', 'a.error_code is not null'],
  ...STATUS_COLUMNS.map(([name, condition]): [string, string] => [name, condition]),
  ...ERROR_CODES.map((code): [string, string] => [`code_${code}`, `a.error_code = '${code}'`]),
];
const ATTEMPT_COUNTS_SQL = ATTEMPT_COLUMNS.map(([name, condition]) => `count(*) filter (where ${condition})::int as "${name}"`);
const NO_ATTEMPTS_SQL = ATTEMPT_COLUMNS.map(([name]) => `0 as "${name}"`);

/**
 * The same figures as usageStatsQuery from every log row and token in the window, without the rollups: the statement
 * usageStats ran before there were rollups, kept as the reference the rollups are tested against
 * (test/usage-rollups.test.ts).
 */
export function usageStatsScanQuery(bucket: StatsBucket, since: Date, until: Date, tenant: Tenant, scope: string | null) {
  const values: unknown[] = [bucket.toLowerCase(), since, until, STATS_TIME_ZONE];
  const param = (v: unknown) => `$${values.push(v)}`;
  const tokenWhere = ['t.issued_at >= $2', 't.issued_at < $3'];
  const logWhere = ['l.timestamp >= $2', 'l.timestamp < $3'];
  if (tenant !== null) {
    const client = param(tenant);
    tokenWhere.push(`t.client_id = ${client}`);
    logWhere.push(`l.client_id = ${client}`);
  }
  if (scope !== null) {
    const scopeParam = param(scope);
    tokenWhere.push(`t.scope = ${scopeParam}`);
    logWhere.push(`t.scope = ${scopeParam}`);
  }
  // The `offset 0` fences keep the planner from estimating the buckets as distinct as the timestamps they are cut from
  // (which made it sort every row in the window, on disk, rather than hash a few dozen groups in memory).
  const text = `select grouping(bucket_start) = 1 as per_scope, bucket_start, scope, 0 as issued, ${ATTEMPT_COUNTS_SQL.join(', ')}
       from (
         select date_trunc($1, l.timestamp, $4) as bucket_start, t.scope, l.error_code, l.status_code, l.released_at
         from request_token_log l left join request_token t on t.id = l.token_id
         where ${logWhere.join(' and ')}
         offset 0
       ) a
       group by grouping sets ((bucket_start), (scope))
       union all
       select grouping(bucket_start) = 1, bucket_start, scope, count(*)::int, ${NO_ATTEMPTS_SQL.join(', ')}
       from (
         select date_trunc($1, t.issued_at, $4) as bucket_start, t.scope
         from request_token t
         where ${tokenWhere.join(' and ')}
         offset 0
       ) a
       group by grouping sets ((bucket_start), (scope))`;
  return { text, values };
}

/**
 * Runs a statistics statement with STATS_STATEMENT_TIMEOUT_MS rather than the pool's timeout, read only, in three
 * round trips: the transaction's start and its timeout in one message (no parameters, so the simple protocol takes
 * both), the statement, the commit. Also the bench baseline's (bench/baseline.ts).
 */
export async function runStatsStatement<R extends pg.QueryResultRow>(
  pool: pg.Pool,
  text: string,
  values: unknown[],
): Promise<R[]> {
  return inTransaction(pool, async (client) => (await client.query<R>(text, values)).rows, {
    begin: `begin read only; set local statement_timeout = ${STATS_STATEMENT_TIMEOUT_MS}`,
  });
}

/**
 * Usage per time bucket and per scope: tokens issued, redemptions, refusals by code and recorded response statuses.
 * `statement` is usageStatsQuery; the tests pass usageStatsScanQuery to compare the two. On Citus it is the scan: the
 * rollups' statement reads each live range through a lateral subquery over the distributed log, which Citus cannot
 * push down to the workers ("cannot push down this subquery"), while the scan runs on every worker in parallel.
 */
export async function usageStats(
  deps: StatsDeps,
  filter: UsageFilter,
  bucket: StatsBucket,
  now = new Date(),
  statement?: typeof usageStatsQuery,
): Promise<UsageStats> {
  if (!STATS_BUCKETS.includes(bucket)) throw new Error(`unknown bucket ${bucket}`);
  const issues = new Issues();
  if (filter.scope != null) checkString(issues, ['filter', 'scope'], filter.scope, { min: 1, max: MAX_SCOPE_LENGTH });
  const { since, until, first, last, size } = statsWindow(filter, bucket, now, issues);
  issues.throwIfAny();

  const chosen = statement ?? ((await logIsDistributed(deps.pool)) ? usageStatsScanQuery : usageStatsQuery);
  const { text, values } = chosen(bucket, since, until, deps.tenant, filter.scope ?? null);
  const rows = await runStatsStatement<StatsRow>(deps.pool, text, values);

  const buckets: UsageBucket[] = [];
  const byStart = new Map<number, UsageBucket>();
  for (let i = first; i < last; i++) {
    const b = { start: new Date(i * size), end: new Date((i + 1) * size), ...emptyCounts() };
    buckets.push(b);
    byStart.set(b.start.getTime(), b);
  }
  const scopes = new Map<string | null, ScopeUsage>();
  const totals = emptyCounts();

  const add = (target: UsageCounts, row: StatsRow) => {
    target.issued += row.issued;
    target.redemptions += row.redemptions;
    target.released += row.released;
    target.refusals += row.refusals;
    for (const [name] of STATUS_COLUMNS) target.responseStatuses[name] += row[name];
    for (const code of ERROR_CODES) {
      const count: number = row[`code_${code}`];
      if (count === 0) continue;
      const entry = target.refusalsByCode.find((c) => c.code === code);
      if (entry) entry.count += count;
      else target.refusalsByCode.push({ code, count });
    }
  };

  for (const row of rows) {
    if (row.per_scope) {
      let usage = scopes.get(row.scope);
      if (!usage) scopes.set(row.scope, (usage = { scope: row.scope, ...emptyCounts() }));
      add(usage, row);
      add(totals, row);
    } else {
      const target = byStart.get(new Date(row.bucket_start).getTime());
      if (!target) throw new Error(`usage bucket ${row.bucket_start} outside the window`);
      add(target, row);
    }
  }
  for (const target of [totals, ...buckets, ...scopes.values()]) {
    target.refusalsByCode.sort((a, b) => b.count - a.count || ERROR_CODES.indexOf(a.code) - ERROR_CODES.indexOf(b.code));
  }

  return {
    bucket,
    timeZone: STATS_TIME_ZONE,
    since,
    until,
    buckets,
    totals,
    // Busiest scopes first; the untied refusals (scope null) last.
    scopes: [...scopes.values()].sort(
      (a, b) =>
        Number(a.scope === null) - Number(b.scope === null) ||
        b.redemptions + b.refusals + b.issued - (a.redemptions + a.refusals + a.issued) ||
        String(a.scope).localeCompare(String(b.scope)),
    ),
  };
}
