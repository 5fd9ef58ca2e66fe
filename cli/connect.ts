import { ConfigError, loadConfig, type Config } from '../server/config.js';
import type { Database } from '../server/database/db.js';
import { ValidationError } from '../server/domain/errors.js';
import { openServiceDatabase } from './database.js';

/** The configuration, or null after printing why it is invalid. */
export function loadCliConfig(): Config | null {
  try {
    return loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`request-token: invalid configuration: ${error.message}\n`);
      return null;
    }
    throw error;
  }
}

/**
 * Runs `work` against the service's database (found as the service finds it: see openServiceDatabase) and maps
 * expected failures to exit statuses: 1 for bad configuration, 2 for bad input or a missing record.
 */
export async function withDatabase(work: (db: Database, config: Config) => Promise<number>): Promise<number> {
  const config = loadCliConfig();
  if (!config) return 1;
  const { db, close } = await openServiceDatabase(config);
  try {
    return await work(db, config);
  } catch (error) {
    if (error instanceof ValidationError) {
      for (const issue of error.issues) process.stderr.write(`request-token: ${issue.path.join('.')}: ${issue.message}\n`);
      return 2;
    }
    if (error instanceof Error && 'code' in error && error.code === 'NOT_FOUND') {
      process.stderr.write(`request-token: ${error.message}\n`);
      return 2;
    }
    throw error;
  } finally {
    await close();
  }
}
