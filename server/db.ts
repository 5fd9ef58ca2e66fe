import { MikroORM } from '@mikro-orm/postgresql';
import pg from 'pg';
import { ormOptions } from '../mikro-orm.config.js';
import type { Config } from './config.js';

export interface Database {
  orm: MikroORM;
  /** Plain pg pool for the hot paths (issue, redeem): prepared statements, one round trip, no unit of work. */
  pool: pg.Pool;
  close(): Promise<void>;
}

/** Connects, applies pending migrations and returns the ORM and the hot-path pool. */
export async function initDatabase(
  url: string,
  config: Pick<Config, 'dbPoolSize' | 'dbPoolTimeoutMs' | 'dbStatementTimeoutMs' | 'dbLockTimeoutMs'>,
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
    await orm.getMigrator().up();
  } catch (error) {
    await orm.close(true);
    throw error;
  }
  const pool = new pg.Pool({
    connectionString: url,
    max: config.dbPoolSize,
    application_name: 'request-token',
    // pg waits forever for a free client by default; a burst beyond the pool fails fast instead.
    connectionTimeoutMillis: config.dbPoolTimeoutMs,
    ...session,
  });
  // An idle client that loses its connection (database restart) must not crash the process.
  pool.on('error', () => {});
  return {
    orm,
    pool,
    async close() {
      await Promise.allSettled([pool.end(), orm.close(true)]);
    },
  };
}
