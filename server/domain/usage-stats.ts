import type pg from 'pg';
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
 * Statistics over a long window read every log row in it (about 2 s for 30 days of 670,000 attempts on a loaded
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

// Counting happens in PostgreSQL: one pass over the log rows in the window (timestamp index) and one over the tokens
// issued in it (issued_at or scope + issued_at index), each grouped twice with GROUPING SETS: by bucket and by scope.
// Each count is a filtered aggregate over those few groups (not a group of its own). The `offset 0` fences keep the
// planner from estimating the buckets as distinct as the timestamps they are cut from (which made it sort every row
// in the window, on disk, rather than hash a few dozen groups in memory). Node only copies the counts over.
const STATUS_COLUMNS: [keyof ResponseStatusCounts, string][] = [
  ['status1xx', 'a.status_code < 200'],
  ['status2xx', 'a.status_code between 200 and 299'],
  ['status3xx', 'a.status_code between 300 and 399'],
  ['status4xx', 'a.status_code between 400 and 499'],
  ['status5xx', 'a.status_code >= 500'],
  ['unrecorded', 'a.status_code is null'],
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

const ATTEMPT_COLUMNS: [string, string][] = [
  ['redemptions', 'a.error_code is null'],
  ['released', 'a.released_at is not null'],
  ['refusals', 'a.error_code is not null'],
  ...STATUS_COLUMNS,
  ...ERROR_CODES.map((code): [string, string] => [`code_${code}`, `a.error_code = '${code}'`]),
];
const ATTEMPT_COUNTS_SQL = ATTEMPT_COLUMNS.map(([name, condition]) => `count(*) filter (where ${condition})::int as "${name}"`);
const NO_ATTEMPTS_SQL = ATTEMPT_COLUMNS.map(([name]) => `0 as "${name}"`);

/**
 * The statement behind usageStats: per bucket and per scope, the attempts in the window and the tokens issued in it.
 * Exported for the bench's baseline, which runs the same SQL (bench/sql.ts).
 */
export function usageStatsQuery(bucket: StatsBucket, since: Date, until: Date, tenant: Tenant, scope: string | null) {
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

/** Usage per time bucket and per scope: tokens issued, redemptions, refusals by code and recorded response statuses. */
export async function usageStats(
  deps: StatsDeps,
  filter: UsageFilter,
  bucket: StatsBucket,
  now = new Date(),
): Promise<UsageStats> {
  if (!STATS_BUCKETS.includes(bucket)) throw new Error(`unknown bucket ${bucket}`);
  const issues = new Issues();
  if (filter.scope != null) checkString(issues, ['filter', 'scope'], filter.scope, { min: 1, max: MAX_SCOPE_LENGTH });
  const { since, until, first, last, size } = statsWindow(filter, bucket, now, issues);
  issues.throwIfAny();

  const { text, values } = usageStatsQuery(bucket, since, until, deps.tenant, filter.scope ?? null);
  const client = await deps.pool.connect();
  let rows: StatsRow[];
  try {
    await client.query('begin read only');
    await client.query(`set local statement_timeout = ${STATS_STATEMENT_TIMEOUT_MS}`);
    ({ rows } = await client.query<StatsRow>(text, values));
    await client.query('commit');
  } catch (error) {
    await client.query('rollback').catch(() => {});
    throw error;
  } finally {
    client.release();
  }

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
