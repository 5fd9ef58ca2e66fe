// Retention of a whole month on the partitioned log, against the row-by-row DELETE it replaces, in one run on an
// embedded PostgreSQL of its own. Two past months get the same N rows (default 500,000, BENCH_ROWS); the older one is
// emptied by the batched DELETE retention ran before partitioning (5,000 rows per statement, oldest first, on the log),
// the other by truncateLogs, which detaches and drops it. Run: npx tsx bench/log-retention.ts
// (BENCH_PG_PORT, default 55112; data under the system temp folder, deleted afterwards).
import { rm } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { initDatabase } from '../server/database/db.js';
import { startEmbeddedDatabase } from '../server/database/embedded-db.js';
import { ensureLogPartitions, monthStart, partitionName } from '../server/domain/log-partitions.js';
import { truncateLogs } from '../server/domain/log-retention.js';
import { clusterTempDir } from '../test/support/temp-dir.js';

const N = Number(process.env.BENCH_ROWS ?? 500_000);
const dir = await clusterTempDir('rt-bench-');
const pg = await startEmbeddedDatabase({ dir: join(dir, 'pg'), port: Number(process.env.BENCH_PG_PORT ?? 55112), persistent: false });
const db = await initDatabase(pg.url, { dbPoolSize: 4, dbPoolTimeoutMs: 60_000, dbStatementTimeoutMs: 600_000, dbLockTimeoutMs: 60_000 });
try {
  const now = new Date();
  const older = monthStart(now, -3);
  const old = monthStart(now, -2);
  await ensureLogPartitions(db.pool, { from: older, to: now });
  const { rows: [token] } = await db.pool.query(`insert into request_token (scope, max_uses, client_id) values ('s', 1, 1) returning id`);
  let t = performance.now();
  for (const month of [older, old]) {
    await db.pool.query(
      `insert into request_token_log (token_id, user_id, client_ip, status_code, timestamp, client_id)
       select case when i % 4 = 0 then 0 else $1 end, 'user-' || (i % 5000), '203.0.113.9', 200,
         $2::timestamptz + i * (interval '27 days' / $3::int), 1
       from generate_series(0, $3::int - 1) i`,
      [token.id, month, N],
    );
  }
  await db.pool.query('vacuum analyze request_token_log');
  console.log(`seeded ${N} rows in each of ${partitionName(older)} and ${partitionName(old)} in ${Math.round(performance.now() - t)} ms`);

  // Before partitioning: batches of 5,000 along the id index, each its own statement.
  t = performance.now();
  let deleted = 0;
  for (;;) {
    const { rowCount } = await db.pool.query(
      `delete from request_token_log where id = any(array(
         select id from request_token_log where timestamp < $1 order by id limit 5000))`,
      [old],
    );
    deleted += rowCount ?? 0;
    if ((rowCount ?? 0) < 5000) break;
  }
  const rowByRow = performance.now() - t;
  console.log(`batched DELETE of ${partitionName(older)}: ${deleted} rows in ${Math.round(rowByRow)} ms`);

  // Partitioned: the month, wholly older than the cut-off, is detached and dropped.
  const days = Math.floor((now.getTime() - monthStart(now, -1).getTime()) / 86_400_000);
  t = performance.now();
  const steps: string[] = [];
  const result = await truncateLogs(db.pool, { maxDays: days }, { onBatch: (b) => steps.push(`${b.droppedPartition ?? 'batch'}:${b.count}`) });
  const dropped = performance.now() - t;
  console.log(`truncateLogs --max-days ${days}: ${result.count} rows in ${Math.round(dropped)} ms (${steps.join(', ')})`);
  console.log(`ratio: dropping the month took ${(dropped / rowByRow).toFixed(3)}x the batched DELETE's time; load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
} finally {
  await db.close();
  await pg.stop();
  await rm(dir, { recursive: true, force: true });
}
