// Dashboard queries on a log of 2,000,000 rows (100,000 tokens in 50 scopes, over 90 days), on an embedded PostgreSQL
// of its own: usageStats, bulk revocation and batched retention. Run: npx tsx bench/dashboard-queries.ts
// (BENCH_PG_PORT, default 55111; data under the system temp folder, deleted afterwards).
import { performance } from 'node:perf_hooks';
import { rm } from 'node:fs/promises';
import { clusterTempDir } from '../test/support/temp-dir.js';
import { join } from 'node:path';
import { startEmbeddedDatabase } from '../server/database/embedded-db.js';
import { initDatabase } from '../server/database/db.js';
import { usageStats } from '../server/domain/usage-stats.js';
import { truncateLogs } from '../server/domain/log-retention.js';
import { ensureLogPartitions } from '../server/domain/log-partitions.js';
import { revokeTokensStatement } from '../server/domain/bulk-revoke.js';

const dir = await clusterTempDir('rt-bench-');
const pg = await startEmbeddedDatabase({ dir: join(dir, 'pg'), port: Number(process.env.BENCH_PG_PORT ?? 55111), persistent: false });
const db = await initDatabase(pg.url, { dbPoolSize: 4, dbPoolTimeoutMs: 60_000, dbStatementTimeoutMs: 600_000, dbLockTimeoutMs: 60_000 });
const q = (t: string, v?: unknown[]) => db.pool.query(t, v);
const DAY = 86_400_000;
const base = new Date(Math.floor(Date.now() / DAY) * DAY - 90 * DAY);
let t = performance.now();
await q(`insert into request_token (scope, user_id, max_uses, issued_at)
  select 'scope-' || (i % 50), 'user-' || (i % 20000), 3, $1::timestamptz + i * interval '77.76 seconds' from generate_series(0, 99999) i`, [base]);
await ensureLogPartitions(db.pool, { from: base, to: new Date() });
await q(`insert into request_token_log (token_id, error_code, status_code, timestamp)
  select (select min(id) from request_token) + (i % 100000), case when i % 7 = 0 then 'TOKEN_EXPIRED' when i % 11 = 0 then 'SCOPE_MISMATCH' end,
    case when i % 3 = 0 then null else 200 + (i % 4) * 100 end, $1::timestamptz + i * interval '3.888 seconds' from generate_series(0, 1999999) i`, [base]);
await q('vacuum analyze');
console.log(`seeded 100k tokens, 2M log rows over 90 days in ${Math.round(performance.now() - t)} ms`);
const time = async (label: string, fn: () => Promise<unknown>, runs = 5) => {
  await fn();
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) { const s = performance.now(); await fn(); ms.push(performance.now() - s); }
  ms.sort((a, b) => a - b);
  console.log(`${label}: median ${ms[Math.floor(runs / 2)].toFixed(1)} ms (min ${ms[0].toFixed(1)}, max ${ms[runs - 1].toFixed(1)})`);
};
const now = new Date();
await time('usageStats HOUR, last 48 h, all scopes', () => usageStats({ pool: db.pool, tenant: null }, {}, 'HOUR', now));
await time('usageStats DAY, last 30 days, all scopes', () => usageStats({ pool: db.pool, tenant: null }, {}, 'DAY', now));
await time('usageStats DAY, last 30 days, one scope', () => usageStats({ pool: db.pool, tenant: null }, { scope: 'scope-7' }, 'DAY', now));
await time('usageStats DAY, 90 days (whole table), all scopes', () => usageStats({ pool: db.pool, tenant: null }, { since: base }, 'DAY', now), 3);
await time('revokeRequestTokens scope + issuedBefore (in a rolled-back txn)', async () => {
  const c = await db.pool.connect(); await c.query('begin');
  // The very UPDATE revokeTokens runs through MikroORM, sent on this connection so that it can be rolled back.
  const filter = { scope: 'scope-3', issuedBefore: new Date(base.getTime() + 30 * DAY) };
  await c.query(revokeTokensStatement({ orm: db.orm, tenant: null }, filter).getFormattedQuery());
  await c.query('rollback'); c.release();
});
t = performance.now();
let batches = 0;
const r = await truncateLogs(db.pool, { maxDays: 45 }, { onBatch: () => batches++ });
console.log(`truncate --max-days 45: deleted ${r.count} rows in ${batches} batches of 5000, ${Math.round(performance.now() - t)} ms total, ${((performance.now() - t) / batches).toFixed(1)} ms per batch`);
await db.close();
await pg.stop();
await rm(dir, { recursive: true, force: true });
