import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { createApp } from './http/app.js';
import { ensureAdminKey } from './domain/bootstrap.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { startEmbeddedDatabase, type EmbeddedDatabase } from './database/embedded-db.js';
import { createLogger } from './logger.js';
import { pruneIdempotencyKeys } from './domain/idempotency.js';
import { createServices, type RunningServices } from './services.js';

/** The process: config → (embedded) database → services (server/services.ts) → HTTP, and the reverse on SIGINT/SIGTERM. */
async function main(): Promise<void> {
  const started = performance.now();
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`request-token: invalid configuration: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
  const log = createLogger(config.logLevel);
  // V8 reads this at every full collection. Under load its default policy let the heap grow far past what survives
  // (garbage, not a leak); 100 % kept the same throughput at about 70 % of the memory (BENCHMARKS.md, Memory).
  if (config.heapGrowingPercent > 0) setFlagsFromString(`--heap-growing-percent=${config.heapGrowingPercent}`);

  let embedded: EmbeddedDatabase | null = null;
  let services: RunningServices | null = null;
  const cleanUp = async () => {
    await services?.close();
    await embedded?.stop();
  };

  try {
    let url = config.databaseUrl;
    if (!url) {
      log.info(`DATABASE_URL is not set: starting an embedded PostgreSQL in ${config.dataDir}/pg`);
      embedded = await startEmbeddedDatabase({
        dir: join(config.dataDir, 'pg'),
        port: config.embeddedPgPort,
        onLog: config.logLevel === 'debug' ? (line) => log.info(`[postgres] ${line}`) : undefined,
      });
      url = embedded.url;
    }
    services = await createServices(config, { log, databaseUrl: url });
    await ensureAdminKey(services.orm.em.fork(), config, log.info);
    const app = createApp(services);
    const url_ = await app.listen(config.port, config.host);
    log.info(`ready in ${Math.round(performance.now() - started)} ms: GraphiQL at ${url_}/graphql, health at ${url_}/healthz`);

    // Hourly, on every instance (the DELETE is idempotent and indexed): old idempotency keys go.
    const pool = services.pool;
    const prune = setInterval(() => {
      pruneIdempotencyKeys(pool, config.idempotencyKeyRetentionHours).catch((error) =>
        log.error('pruning idempotency keys failed', error),
      );
    }, 3_600_000);
    prune.unref();

    let stopping = false;
    const shutdown = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info(`${signal}: draining requests and shutting down`);
      // The whole shutdown fits in SHUTDOWN_TIMEOUT_MS: requests get most of it, closing the pool and PostgreSQL the rest.
      const deadline = config.shutdownTimeoutMs;
      const force = setTimeout(() => {
        log.error(`shutdown took longer than ${deadline} ms; exiting`);
        process.exit(1);
      }, deadline);
      force.unref();
      clearInterval(prune);
      await app.stop(Math.max(deadline / 2, deadline - 3_000));
      await cleanUp();
      log.info('stopped');
      process.exit(0);
    };
    process.on('SIGINT', () => void shutdown('SIGINT'));
    process.on('SIGTERM', () => void shutdown('SIGTERM'));
  } catch (error) {
    log.error('start-up failed', error);
    await cleanUp();
    process.exit(1);
  }
}

void main();
