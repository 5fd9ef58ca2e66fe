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

/** `--name value` and `--name=value` options, and the remaining positional arguments. */
export function parseOptions(args: string[], known: string[]): { options: Record<string, string>; positional: string[] } {
  const options: Record<string, string> = {};
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const [name, inline] = arg.slice(2).split(/=(.*)/s, 2);
    if (!known.includes(name)) throw new Error(`unknown option --${name} (known: ${known.map((k) => `--${k}`).join(', ')})`);
    const value = inline ?? args[++i];
    if (value === undefined) throw new Error(`--${name} needs a value`);
    options[name] = value;
  }
  return { options, positional };
}

/** Prints rows as aligned columns. */
export function printTable(rows: Record<string, unknown>[]): void {
  if (rows.length === 0) return void process.stdout.write('(none)\n');
  const columns = Object.keys(rows[0]);
  const cell = (v: unknown) => (v == null ? '-' : v instanceof Date ? v.toISOString() : String(v));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i])).join('  ').trimEnd();
  process.stdout.write(`${line(columns)}\n`);
  for (const row of rows) process.stdout.write(`${line(columns.map((c) => cell(row[c])))}\n`);
}
