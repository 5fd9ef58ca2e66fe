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
  config: Pick<Config, 'dbPoolSize'>,
  log: (line: string) => void = () => {},
): Promise<Database> {
  const orm = await MikroORM.init({
    ...ormOptions(url, Math.max(2, Math.ceil(config.dbPoolSize / 4))),
    logger: (message) => log(message.replace(/\x1b\[[0-9;]*m/g, '')),
  });
  try {
    await orm.getMigrator().up();
  } catch (error) {
    await orm.close(true);
    throw error;
  }
  const pool = new pg.Pool({ connectionString: url, max: config.dbPoolSize, application_name: 'request-token' });
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
