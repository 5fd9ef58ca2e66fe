import { MikroORM } from '@mikro-orm/postgresql';
import pg from 'pg';
import { ormOptions } from '../../mikro-orm.config.js';
import type { Config } from '../config.js';

export interface Database {
  orm: MikroORM;
  /** Plain pg pool for the hot paths (issue, redeem): prepared statements, one round trip, no unit of work. */
  pool: pg.Pool;
  /**
   * Micro-batched redemptions' and issues' own connections (server/domain/redeem-batch.ts, issue-batch.ts), taken
   * from DB_POOL_SIZE; null when batching is off. Their prepared statements always use a generic plan: the batch statement is costly to plan
   * (about 0.5 ms, as much as running it) and PostgreSQL would otherwise plan it anew on every execution.
   */
  batchPool: pg.Pool | null;
  close(): Promise<void>;
}

/**
 * Connections of DB_POOL_SIZE that micro-batched statements (redemptions, issues) get: a third, when batching of
 * either is on and the pool allows.
 */
export const redeemBatchSlots = (config: { dbPoolSize: number; redeemBatchMax?: number; issueBatchMax?: number }): number =>
  ((config.redeemBatchMax ?? 1) > 1 || (config.issueBatchMax ?? 1) > 1) && config.dbPoolSize >= 2
    ? Math.max(1, Math.round(config.dbPoolSize / 3))
    : 0;

/** Connects, applies pending migrations and returns the ORM and the hot-path pool. */
export async function initDatabase(
  url: string,
  config: Pick<Config, 'dbPoolSize' | 'dbPoolTimeoutMs' | 'dbStatementTimeoutMs' | 'dbLockTimeoutMs'> &
    Partial<Pick<Config, 'redeemBatchMax' | 'issueBatchMax'>>,
  log: (line: string) => void = () => {},
): Promise<Database> {
  // Every connection, ORM or hot path, carries the timeouts: a slow or locked query ends with an error, never a hang.
  const session = {
    statement_timeout: config.dbStatementTimeoutMs,
    lock_timeout: config.dbLockTimeoutMs,
    idle_in_transaction_session_timeout: config.dbStatementTimeoutMs,
    keepAlive: true,
  };
  const orm = await MikroORM.init({
    ...ormOptions(url, Math.max(2, Math.ceil(config.dbPoolSize / 4))),
    // knex waits 60 s for a pool connection by default; API-key checks go through the ORM and must fail as fast.
    driverOptions: { acquireConnectionTimeout: config.dbPoolTimeoutMs, connection: session },
    logger: (message) => log(message.replace(/\x1b\[[0-9;]*m/g, '')),
  });
  try {
    // Pending migrations run in one transaction (allOrNothing) without the statement timeout: building an index or
    // moving rows takes as long as the tables are large, and a start-up that hit the timeout would roll every pending
    // migration back, and again at each restart. The lock timeout still holds (a migration waiting for a busy table
    // fails rather than hangs).
    const connection = orm.em.getConnection();
    await connection.transactional(async (transaction) => {
      await connection.execute('set local statement_timeout = 0', [], 'run', transaction);
      await orm.getMigrator().up({ transaction });
    });
  } catch (error) {
    await orm.close(true);
    throw error;
  }
  const slots = redeemBatchSlots(config);
  const hotPool = (max: number, extra: pg.PoolConfig = {}) => {
    const created = new pg.Pool({
      connectionString: url,
      max,
      application_name: 'request-token',
      // pg waits forever for a free client by default; a burst beyond the pool fails fast instead.
      connectionTimeoutMillis: config.dbPoolTimeoutMs,
      ...session,
      ...extra,
    });
    // An idle client that loses its connection (database restart) must not crash the process.
    created.on('error', () => {});
    return created;
  };
  const pool = hotPool(config.dbPoolSize - slots);
  const batchPool = slots > 0 ? hotPool(slots, { options: '-c plan_cache_mode=force_generic_plan' }) : null;
  return {
    orm,
    pool,
    batchPool,
    async close() {
      await Promise.allSettled([pool.end(), batchPool?.end(), orm.close(true)]);
    },
  };
}
