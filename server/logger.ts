import type { Config } from './config.js';
import type { Logger } from './context.js';

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 } as const;

/** One line per event on stderr; errors with their stack, which never reaches clients. */
export function createLogger(level: Config['logLevel']): Logger {
  const at = LEVELS[level];
  const stamp = () => new Date().toISOString();
  return {
    info(message) {
      if (at <= LEVELS.info) process.stderr.write(`${stamp()} info  ${message}\n`);
    },
    error(message, error) {
      if (at > LEVELS.error) return;
      const detail = error instanceof Error ? `\n${error.stack ?? error.message}${databaseFields(error)}` : error ? `\n${String(error)}` : '';
      process.stderr.write(`${stamp()} error ${message}${detail}\n`);
    },
  };
}

/** A database error's SQLSTATE and where PostgreSQL (or a Citus worker) raised it, which its stack does not say. */
function databaseFields(error: Error): string {
  const e = error as Error & { code?: unknown; routine?: unknown; where?: unknown };
  const fields = [
    typeof e.code === 'string' && `code ${e.code}`,
    typeof e.routine === 'string' && `routine ${e.routine}`,
    typeof e.where === 'string' && `where ${e.where.split('\n')[0]}`,
  ].filter(Boolean);
  return fields.length ? `\n    (${fields.join(', ')})` : '';
}
