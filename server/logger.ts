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
      const detail = error instanceof Error ? `\n${error.stack ?? error.message}` : error ? `\n${String(error)}` : '';
      process.stderr.write(`${stamp()} error ${message}${detail}\n`);
    },
  };
}
