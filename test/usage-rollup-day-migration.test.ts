import { MikroORM } from '@mikro-orm/postgresql';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ormOptions } from '../mikro-orm.config.js';
import { ensureLogPartitions } from '../server/domain/log-partitions.js';
import { compactRollups } from '../server/domain/usage-rollups.js';
import { usageStats, usageStatsScanQuery } from '../server/domain/usage-stats.js';
import { createTestDatabase } from './support/harness.js';

/**
 * The migration that adds the daily rollups, on a database whose hourly rollups were compacted before it: it must
 * fill every whole compacted day from its hourly rows (statistics read such a day from the day rows only), and
 * nothing else. Its hourly rows come from a compaction; the migration is then undone (its table dropped) and run again.
 */
const DAILY = 'Migration20261130114512_usage_rollup_day';
const HOUR = 3_600_000;

let url: string;
let orm: MikroORM;
let pool: pg.Pool;

beforeAll(async () => {
  // A session time zone far from UTC: the days are UTC days whatever the connection's zone.
  url = await createTestDatabase({ timeZone: 'Pacific/Chatham' });
  orm = await MikroORM.init({ ...ormOptions(url, 2), logger: () => {} });
  await orm.getMigrator().up();
  pool = new pg.Pool({ connectionString: url, max: 3 });
  const now = Date.now();
  const origin = Math.floor(now / HOUR) * HOUR - 5 * 24 * HOUR;
  await ensureLogPartitions(pool, { from: new Date(origin), to: new Date(now) });
  // Five days of tokens and attempts of two scopes, every 37 minutes, some refused.
  await pool.query(
    `insert into request_token (client_id, scope, max_uses, issued_at)
     select 1, case when i % 3 = 0 then 'a' else 'b' end, 100, $1::timestamptz + i * interval '37 minutes'
     from generate_series(0, 5 * 24 * 60 / 37 - 1) i`,
    [new Date(origin)],
  );
  await pool.query(
    `insert into request_token_log (token_id, client_id, error_code, status_code, timestamp)
     select t.id, 1, case when t.id % 4 = 0 then 'MAX_USES_EXCEEDED' end, case when t.id % 5 = 0 then 200 end,
       t.issued_at + interval '3 minutes'
     from request_token t where t.issued_at + interval '3 minutes' < now()`,
  );
  await compactRollups(pool);
}, 60_000);

afterAll(async () => {
  await pool?.end();
  await orm?.close(true);
});

const dayRows = async () =>
  (await pool.query(`select * from usage_rollup_day order by day, client_id, scope, error_code`)).rows;

describe('the migration adding the daily rollups', () => {
  it('fills the whole compacted days from their hourly rows, as the compaction does', async () => {
    const built = await dayRows();
    expect(built.length).toBeGreaterThan(4);
    await orm.getMigrator().down({ to: DAILY });
    await orm.getMigrator().down();
    expect((await pool.query(`select to_regclass('usage_rollup_day') as t`)).rows[0].t).toBeNull();
    await orm.getMigrator().up();
    expect(await dayRows()).toEqual(built);

    // And statistics by the day read them as a full scan of the log would count.
    const deps = { pool, tenant: null };
    const now = new Date();
    const window = { since: new Date(now.getTime() - 6 * 24 * HOUR), until: now };
    expect(await usageStats(deps, window, 'DAY', now)).toEqual(await usageStats(deps, window, 'DAY', now, usageStatsScanQuery));
  });
});
