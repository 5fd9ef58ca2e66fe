import type { EntityManager } from '@mikro-orm/postgresql';
import type pg from 'pg';
import { logIsDistributed } from '../database/citus.js';
import type { Tenant } from './api-keys.js';

/**
 * Listings' totals (`totalCount`) from the usage rollups, exactly, where the rollups are keyed by the listing's
 * filters: the number of log rows of requestTokenLogs, and of tokens of requestTokens. One statement, so one snapshot,
 * split as usageStatsQuery splits its window (server/domain/usage-stats.ts), whose exactness argument
 * (server/domain/usage-rollups.ts) holds here as well:
 *
 * - whole UTC days that are compacted and hold no stale hour: their day rows (usage_rollup_day);
 * - other whole hours below the compaction's watermark that are not stale: their hourly rows (usage_rollup), the
 *   hour the watermark falls in included (its rows hold it up to the watermark);
 * - the rest (the window's partial hours, everything from the watermark on, stale hours up to the watermark): the
 *   log, or the tokens.
 *
 * A tenant's 7 million log rows are a few thousand day rows and a few minutes of log rows instead of an index scan of
 * every month; its million tokens, the same day rows and the tokens issued since the watermark.
 */

/** Filters of a log listing (LogFilter, server/domain/logs.ts). */
export interface RollupCountFilter {
  tokenId?: unknown;
  scope?: string | null;
  userId?: unknown;
  statusCode?: unknown;
  failed?: boolean | null;
  since?: Date | null;
  until?: Date | null;
}

/** Filters of a token listing (TokenFilter, server/domain/tokens.ts). */
export interface RollupTokenCountFilter {
  scope?: string | null;
  userId?: unknown;
  status?: unknown;
}

/**
 * The statement's parts before its final select: the window `p` (since, until), the window's whole
 * hours and days (`d`), the stale hours in it (`stale`, and the whole days they fall in, `stale_days`), the hourly
 * ranges read from usage_rollup (`hourly`) and the ranges read from the log or the tokens (`live`).
 */
const RANGES_SQL = `with p as (
       select :since::timestamptz as since, :until::timestamptz as until
     ), b as (
       -- Whole hours [first, last) inside [since, until) (±infinity when open), none when inside one hour.
       select p.since, p.until,
         date_trunc('hour', p.since, 'UTC')
           + case when date_trunc('hour', p.since, 'UTC') < p.since then interval '1 hour' else interval '0' end as first,
         date_trunc('hour', p.until, 'UTC') as last
       from p
     ), h as (
       select b.since, b.until,
         case when b.first < b.last then b.first else b.since end as first,
         case when b.first < b.last then b.last else b.since end as last,
         coalesce((select compacted_until from usage_rollup_state where id = 1), '-infinity') as compacted
       from b
     ), e as (
       -- Whole UTC days [first_day, last_day) inside those hours, none when there is no whole one.
       select h.*,
         date_trunc('day', h.first, 'UTC')
           + case when date_trunc('day', h.first, 'UTC') < h.first then interval '24 hours' else interval '0' end as fd,
         date_trunc('day', h.last, 'UTC') as ld
       from h
     ), d as (
       select e.since, e.until, e.first, e.last, e.compacted,
         case when e.fd < e.ld then e.fd else e.first end as first_day,
         -- The days with day rows: those whose 24 hours are all compacted.
         greatest(case when e.fd < e.ld then e.fd else e.first end,
           least(case when e.fd < e.ld then e.ld else e.first end, date_trunc('day', e.compacted, 'UTC'))) as days_end
       from e
     ), stale as materialized (
       select s.hour from usage_rollup_stale s, d where s.hour >= d.first and s.hour < least(d.last, d.compacted)
     ), stale_days as materialized (
       select distinct date_trunc('day', s.hour, 'UTC') as day from stale s, d
       where s.hour >= d.first_day and s.hour < d.days_end
     ), hourly as (
       select d.first as lo, d.first_day as hi from d
       union all
       select d.days_end, d.last from d
       union all
       select s.day, s.day + interval '24 hours' from stale_days s
     ), live as (
       select d.since as lo, d.first as hi from d where d.since < d.first
       union all
       select greatest(d.first, least(d.last, d.compacted)), d.until from d
       union all
       -- A stale hour up to the watermark, where the range before ends (the hour it falls in, when not on the hour).
       select s.hour, least(s.hour + interval '1 hour', d.compacted) from stale s, d
     )`;

const and = (conditions: string[]) => conditions.map((c) => ` and ${c}`).join('');

/**
 * `text` with each `:name` as a placeholder `?` (as the EntityManager's connection runs SQL) and its value in order:
 * the client and the scope are constants where they filter, so that the planner plans for their values (a join to a
 * CTE holding them would hide them, and it would guess the log's client index selective enough to AND with the
 * timestamp range).
 */
function bind(text: string, named: Record<'since' | 'until' | 'client' | 'scope', unknown>) {
  const values: unknown[] = [];
  const bound = text.replace(/:(since|until|client|scope)::/g, (_, name: keyof typeof named) => {
    values.push(named[name]);
    return '?::';
  });
  return { text: bound, values };
}

/** The sum of `column` over the day rows and the hourly rows the ranges above give to the rollups. */
const rolledUpSum = (column: string, rollup: string[]) => `coalesce((select sum(r.${column}) from usage_rollup_day r, d
         where r.day >= d.first_day and r.day < d.days_end and r.day not in (select day from stale_days)${and(rollup)}), 0)
       + coalesce((select sum(r.${column}) from hourly v, d, lateral (
           select r.${column} from usage_rollup r
           where r.hour >= v.lo and r.hour < least(v.hi, d.compacted) and r.hour not in (select hour from stale)${and(rollup)}
           offset 0
         ) r), 0)`;

/**
 * The count of a log listing from the rollups, or null for a filter they cannot answer: a token, a user or a status
 * (the rollups are not keyed by them), and on Citus (`citus`) a scope. Answered: the tenant (the row's client), the
 * scope, refusals or successes (the error code) and the time window, in any combination.
 *
 * The scope: the listing takes the log rows of the caller's client whose token is one of the caller's tokens of that
 * scope; the rollups count log rows by the row's client and its token's scope. The two agree because a log row naming
 * a stored token carries that token's client: every writer copies it from the token (redeem.ts, redeem-batch.ts, the
 * Citus functions, the refusal of a token the caller does not own is logged with no token, the Django import refuses
 * a token of another client). An admin key (no tenant) takes every client on both sides.
 */
export function rollupCountQuery(
  tenant: Tenant,
  filter: RollupCountFilter,
  { citus = false }: { citus?: boolean } = {},
): { text: string; values: unknown[] } | null {
  if (filter.tokenId != null || filter.userId != null || filter.statusCode != null) return null;
  const named = { since: filter.since ?? '-infinity', until: filter.until ?? 'infinity', client: tenant, scope: filter.scope ?? null };
  const rollup: string[] = [];
  const log: string[] = [];
  if (tenant !== null) {
    rollup.push('r.client_id = :client::bigint');
    log.push('l.client_id = :client::bigint');
  }
  // On Citus a scope is not counted here: the tail's tokens would be a correlated lookup of a distributed table.
  if (filter.scope != null && citus) return null;
  if (filter.scope != null) rollup.push('r.scope = :scope::text');
  if (filter.failed === true) {
    rollup.push(`r.error_code <> ''`);
    log.push('l.error_code is not null');
  } else if (filter.failed === false) {
    rollup.push(`r.error_code = ''`);
    log.push('l.error_code is null');
  }
  // Each live range its own subquery (offset 0 keeps it one) read by the log's timestamp index: as a join, the planner
  // (which cannot know how long the ranges are: a retention leaves hundreds of stale hours) may read every row of a
  // month instead, looking each one's token up. Citus cannot push a lateral subquery over the distributed log down:
  // there the ranges are a plain join (and a scope is never counted here).
  if (filter.scope == null) {
    const tail = citus
      ? `select count(*) from live v join request_token_log l on l.timestamp >= v.lo and l.timestamp < v.hi
            where v.lo < v.hi${and(log)}`
      : `select count(*) from live v, lateral (
             select 1 from request_token_log l where l.timestamp >= v.lo and l.timestamp < v.hi${and(log)}
             offset 0
           ) l where v.lo < v.hi`;
    return bind(`${RANGES_SQL}
     select ${rolledUpSum('attempts', rollup)}
       + (${tail})
       as n`, named);
  }
  // A scope, as the listing has it: the row's token is one of the caller's tokens of the scope. The tail's rows are
  // counted by token (a few minutes of rows, a few hundred tokens), and those tokens are found among the scope's in
  // one scan of the (scope, client_id, id) index (`id = any(…)`: the index alone, in id order), rather than each row's
  // token looked up by its primary key (bench:scale: 2,700 rows, 9.7 ms for the statement, now 6.5 ms). Never a join
  // the planner could make a hash join over every token of the scope.
  const owner = tenant !== null ? ' and t.client_id = :client::bigint' : '';
  return bind(`${RANGES_SQL}, tail as materialized (
       select l.token_id, count(*) as n from live v, lateral (
         select l.token_id from request_token_log l where l.timestamp >= v.lo and l.timestamp < v.hi${and(log)}
         offset 0
       ) l where v.lo < v.hi group by l.token_id
     )
     select ${rolledUpSum('attempts', rollup)}
       + (select coalesce(sum(g.n), 0) from tail g where g.token_id in (
           select t.id from request_token t
           where t.scope = :scope::text${owner} and t.id = any(array(select token_id from tail))))
       as n`, named);
}

/**
 * The count of a token listing from the rollups (tokens issued, by the token's client and scope), or null for a
 * filter they cannot answer: a user or a status. Answered: the tenant and the scope. Every token is listed, revoked
 * and expired ones too (the status filter is what leaves them out), and none is ever deleted, so the tokens of a
 * client and scope are exactly those ever issued: the day and hourly rows' `issued` plus the tokens issued in the live
 * ranges (from the watermark on, stale hours: the Django import marks the hours of the tokens it brings).
 */
export function rollupTokenCountQuery(
  tenant: Tenant,
  filter: RollupTokenCountFilter,
): { text: string; values: unknown[] } | null {
  if (filter.userId != null || filter.status != null) return null;
  const named = { since: '-infinity', until: 'infinity', client: tenant, scope: filter.scope ?? null };
  const rollup: string[] = [];
  const token: string[] = [];
  // Tokens are counted on the '' outcome only.
  rollup.push(`r.error_code = ''`);
  if (tenant !== null) {
    rollup.push('r.client_id = :client::bigint');
    token.push('t.client_id = :client::bigint');
  }
  // With a scope, each range is a range of the (scope, issued_at) index; else of the issued_at one.
  let range = 't.issued_at >= v.lo and t.issued_at < v.hi';
  if (filter.scope != null) {
    rollup.push('r.scope = :scope::text');
    range = '(t.scope, t.issued_at) >= (:scope::text, v.lo) and (t.scope, t.issued_at) < (:scope::text, v.hi)';
  }
  // Each live range its own subquery (offset 0 keeps it one), read by its index: as a join, the planner (which cannot
  // know how long the ranges are) would rather read every token.
  const text = `${RANGES_SQL}
     select ${rolledUpSum('issued', rollup)}
       + (select count(*) from live v, lateral (
           select 1 from request_token t where ${range}${and(token)}
           offset 0
         ) t where v.lo < v.hi)
       as n`;
  return bind(text, named);
}

/** Where the counts run: the request's EntityManager, and the pool that tells whether the tables are on Citus. */
export interface CountDeps {
  em: EntityManager;
  pool: pg.Pool;
}

async function runCount(em: EntityManager, query: { text: string; values: unknown[] } | null): Promise<number | null> {
  if (!query) return null;
  const [row] = await em.getConnection().execute<{ n: string }[]>(query.text, query.values, 'all');
  return Number(row.n);
}

/**
 * The count of rollupCountQuery, or null for a filter it cannot answer (on Citus, a scope either: rollupCountQuery).
 */
export async function countLogsFromRollups(deps: CountDeps, tenant: Tenant, filter: RollupCountFilter): Promise<number | null> {
  if (!rollupCountQuery(tenant, filter)) return null;
  return runCount(deps.em, rollupCountQuery(tenant, filter, { citus: await logIsDistributed(deps.pool) }));
}

/**
 * The count of rollupTokenCountQuery, or null for a filter it cannot answer. On Citus, never: its live ranges are
 * lateral subqueries over the distributed tokens, which Citus cannot push down.
 */
export async function countTokensFromRollups(deps: CountDeps, tenant: Tenant, filter: RollupTokenCountFilter): Promise<number | null> {
  const query = rollupTokenCountQuery(tenant, filter);
  if (query && (await logIsDistributed(deps.pool))) return null;
  return runCount(deps.em, query);
}
