import { ConfigError, loadConfig, type Config } from '../server/config.js';

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
