import type { EntityManager } from '@mikro-orm/postgresql';
import type { Tenant } from './api-keys.js';

/**
 * The exact number of the log rows a listing's filter matches, from the hourly rollups where they hold whole hours
 * and from the log elsewhere (the partial hours at the window's edges, everything from the compaction's watermark on,
 * stale hours), in one statement and so one snapshot: the same split as usageStatsQuery (server/domain/usage-stats.ts),
 * whose exactness argument (server/domain/usage-rollups.ts) holds for it as well. A tenant's 7 million rows are a few
 * thousand rollup rows and an hour or so of log rows instead of an index scan of every month.
 *
 * Only for the filters the rollups are keyed by: the tenant (the row's client), refusals or successes (the error
 * code) and the time window. Others (a token, a scope, a user, a status) return null: count them from the log.
 * Scope is left out on purpose: a rollup's scope is its row's token's scope whichever client that token has, while
 * the listing's scope filter takes only the caller's own tokens.
 */
export interface RollupCountFilter {
  tokenId?: unknown;
  scope?: unknown;
  userId?: unknown;
  statusCode?: unknown;
  failed?: boolean | null;
  since?: Date | null;
  until?: Date | null;
}

export function rollupCountQuery(tenant: Tenant, filter: RollupCountFilter): { text: string; values: unknown[] } | null {
  if (filter.tokenId != null || filter.scope != null || filter.userId != null || filter.statusCode != null) return null;
  // The statement's parameters, once each (placeholders `?`, as the EntityManager's connection runs SQL).
  const values: unknown[] = [filter.since ?? '-infinity', filter.until ?? 'infinity', tenant];
  const rollup: string[] = [];
  const log: string[] = [];
  if (tenant !== null) {
    rollup.push('r.client_id = h.client');
    log.push('l.client_id = h.client');
  }
  if (filter.failed === true) {
    rollup.push(`r.error_code <> ''`);
    log.push('l.error_code is not null');
  } else if (filter.failed === false) {
    rollup.push(`r.error_code = ''`);
    log.push('l.error_code is null');
  }
  const and = (conditions: string[]) => conditions.map((c) => ` and ${c}`).join('');
  // Whole hours [first, last) inside [since, until) (±infinity when open), none when the window is inside one hour.
  const text = `with p as (
       select ?::timestamptz as since, ?::timestamptz as until, ?::bigint as client
     ), b as (
       select p.since, p.until, p.client,
         date_trunc('hour', p.since, 'UTC')
           + case when date_trunc('hour', p.since, 'UTC') < p.since then interval '1 hour' else interval '0' end as first,
         date_trunc('hour', p.until, 'UTC') as last
       from p
     ), h as (
       select b.since, b.until, b.client,
         case when b.first < b.last then b.first else b.since end as first,
         case when b.first < b.last then b.last else b.since end as last,
         coalesce((select compacted_until from usage_rollup_state where id = 1), '-infinity') as compacted
       from b
     ), live as (
       select h.since as lo, h.first as hi from h where h.since < h.first
       union all
       select greatest(h.first, least(h.last, h.compacted)), h.until from h
       union all
       select s.hour, s.hour + interval '1 hour' from usage_rollup_stale s, h
       where s.hour >= h.first and s.hour < least(h.last, h.compacted)
     )
     select
       coalesce((select sum(r.attempts) from usage_rollup r, h
         where r.hour >= h.first and r.hour < least(h.last, h.compacted)${and(rollup)}), 0)
       -- Stale hours' rollups are out of date: taken back out (there are few), their hours read from the log.
       - coalesce((select sum(r.attempts) from usage_rollup_stale s join usage_rollup r on r.hour = s.hour, h
         where s.hour >= h.first and s.hour < least(h.last, h.compacted)${and(rollup)}), 0)
       + (select count(*) from live v join request_token_log l on l.timestamp >= v.lo and l.timestamp < v.hi, h
          where v.lo < v.hi${and(log)})
       as n`;
  return { text, values };
}

/** The count of rollupCountQuery on the request's EntityManager, or null for a filter it cannot answer. */
export async function countLogsFromRollups(em: EntityManager, tenant: Tenant, filter: RollupCountFilter): Promise<number | null> {
  const query = rollupCountQuery(tenant, filter);
  if (!query) return null;
  const [row] = await em.getConnection().execute<{ n: string }[]>(query.text, query.values, 'all');
  return Number(row.n);
}
