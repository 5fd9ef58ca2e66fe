import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../server/config.js';
import { initDatabase, type Database } from '../server/database/db.js';
import { embeddedDatabaseUrl, startEmbeddedDatabase, type EmbeddedDatabase } from '../server/database/embedded-db.js';

/**
 * The service's database for a CLI command, found the way the service finds it: DATABASE_URL, else the embedded
 * cluster under DATA_DIR — the running one when the service is up (read from its postmaster.pid), else started here
 * for the duration of the command. Never creates a new cluster: a command on an empty DATA_DIR is a mistake.
 */
export async function openServiceDatabase(config: Config): Promise<{ db: Database; close(): Promise<void> }> {
  let url = config.databaseUrl;
  let embedded: EmbeddedDatabase | null = null;
  if (!url) {
    const dir = join(config.dataDir, 'pg');
    if (!(await stat(join(dir, 'PG_VERSION')).catch(() => null))) {
      throw new Error(`no database: DATABASE_URL is not set and ${dir} holds no PostgreSQL cluster (set DATA_DIR)`);
    }
    const running = await runningPort(dir);
    if (running !== null) {
      url = await embeddedDatabaseUrl(dir, running);
    } else {
      embedded = await startEmbeddedDatabase({ dir, port: config.embeddedPgPort });
      url = embedded.url;
    }
  }
  try {
    // A command may count or delete far more rows than a request does: it gets a minute per statement.
    const db = await initDatabase(url, {
      ...config,
      dbPoolSize: 2,
      dbStatementTimeoutMs: Math.max(config.dbStatementTimeoutMs, 60_000),
    });
    return {
      db,
      async close() {
        await db.close();
        await embedded?.stop();
      },
    };
  } catch (error) {
    await embedded?.stop();
    throw error;
  }
}

/** The port of the postmaster running on `dir`, from its postmaster.pid (line 1: pid, line 4: port). */
async function runningPort(dir: string): Promise<number | null> {
  const lines = (await readFile(join(dir, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!pid || !port) return null;
  try {
    process.kill(pid, 0);
    return port;
  } catch {
    return null;
  }
}

/** The operator at the command line acts for every tenant, like an admin key. */
export const operator = (db: Database) => ({ orm: db.orm, tenant: null });
