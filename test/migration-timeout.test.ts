import { MikroORM } from '@mikro-orm/postgresql';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ormOptions } from '../mikro-orm.config.js';
import { initDatabase, type Database } from '../server/database/db.js';
import { ensureLogPartitions } from '../server/domain/log-partitions.js';
import { createTestDatabase } from './support/harness.js';

/**
 * Start-up migrates a database that holds rows: the pending migrations run however long their index builds take,
 * not under the service's statement timeout (which would roll every one of them back, at every restart). The database
 * is migrated up to the migration before the log's (user_id, id) index, given enough log rows that building that
 * index takes far longer than the statement timeout the service is then started with.
 */
const BEFORE = 'Migration20261130122533_request_token_user_id_id_index';
const ROWS = 400_000;
const STATEMENT_TIMEOUT_MS = 100;

let url: string;
let db: Database | undefined;

beforeAll(async () => {
  url = await createTestDatabase({ plain: true });
  const orm = await MikroORM.init({ ...ormOptions(url, 2), logger: () => {} });
  try {
    await orm.getMigrator().up({ to: BEFORE });
  } finally {
    await orm.close(true);
  }
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  try {
    await ensureLogPartitions(pool, { from: new Date(), to: new Date() });
    await pool.query(
      `insert into request_token_log (token_id, client_id, user_id, timestamp)
       select 0, 1, md5(i::text), now() from generate_series(1, $1) i`,
      [ROWS],
    );
    // Not vacuous: on this machine, building the index the pending migration builds takes longer than the timeout.
    await pool.query('begin');
    const started = performance.now();
    await pool.query('create index probe on request_token_log (user_id, id)');
    const took = performance.now() - started;
    await pool.query('rollback');
    expect(took).toBeGreaterThan(STATEMENT_TIMEOUT_MS);
  } finally {
    await pool.end();
  }
}, 120_000);

afterAll(async () => {
  await db?.close();
});

describe('start-up on a database with rows', () => {
  it('runs the pending migrations to the end, past the statement timeout', async () => {
    db = await initDatabase(url, { dbPoolSize: 2, dbPoolTimeoutMs: 5_000, dbStatementTimeoutMs: STATEMENT_TIMEOUT_MS, dbLockTimeoutMs: 50 });
    expect(await db.orm.getMigrator().getPendingMigrations()).toEqual([]);
    const { rows } = await db.pool.query(`select indexname from pg_indexes where tablename = 'request_token_log' and indexdef like '%(user_id, id)%'`);
    expect(rows.length).toBeGreaterThan(0);
    // The service's connections keep the timeout.
    expect((await db.pool.query('show statement_timeout')).rows[0].statement_timeout).toBe(`${STATEMENT_TIMEOUT_MS}ms`);
  });
});
