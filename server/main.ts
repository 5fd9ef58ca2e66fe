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
import { anyFreePort, portInUse } from './port-check.js';
import { StartupError } from './startup-error.js';

/**
 * The process: config → (embedded) database → services (createServices, server/services.ts) → HTTP, and the reverse
 * on SIGINT, SIGTERM and SIGHUP.
 */
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
    // Queued refusal log rows are written before the pool closes.
    await services?.close();
    await embedded?.stop();
  };

  // A signal during start-up stops what has started so far, instead of leaving an embedded PostgreSQL behind.
  let shutdown: ((signal: string) => Promise<void>) | null = null;
  let signalled: string | null = null;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (shutdown) void shutdown(signal);
      else signalled ??= signal;
    });
  }
  if (config.launchedByNpm) watchParent((reason) => (shutdown ? void shutdown(reason) : (signalled ??= reason)));

  try {
    // Before the database starts and before an admin key is made: a taken port is the most common first failure.
    if (await portInUse(config.port, config.host)) {
      throw new StartupError(`port ${config.port} is in use: set PORT=${await anyFreePort(config.host)} (or another free port)`);
    }
    let url = config.databaseUrl;
    if (!url) {
      log.info(`DATABASE_URL is not set: starting an embedded PostgreSQL in ${config.dataDir}/pg`);
      embedded = await startEmbeddedDatabase({
        dir: join(config.dataDir, 'pg'),
        port: config.embeddedPgPort,
        onLog: config.logLevel === 'debug' ? (line) => log.info(`[postgres] ${line}`) : undefined,
        onNotice: log.info,
      });
      url = embedded.url;
    }
    if (signalled) throw new Interrupted(signalled);
    services = await createServices(config, {
      log,
      databaseUrl: url,
      explainDatabaseError: (error) =>
        explainDatabaseError(error, config.databaseUrl ? 'DATABASE_URL' : 'the embedded PostgreSQL'),
      explainSecretError: (error) => explainFileError(error, config.dataDir),
    });
    await ensureAdminKey(services.orm.em.fork(), config, log.info);
    if (signalled) throw new Interrupted(signalled);
    const app = createApp(services);
    const url_ = await app.listen(config.port, config.host).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'EADDRINUSE') throw new StartupError(`port ${config.port} is in use: set PORT to a free port`);
      throw error;
    });
    log.info(`ready in ${Math.round(performance.now() - started)} ms: GraphiQL at ${url_}/graphql, health at ${url_}/healthz`);

    // Hourly, on every instance (the DELETE is idempotent and indexed): old idempotency keys go.
    const pool = services.pool;
    const prune = setInterval(() => {
      pruneIdempotencyKeys(pool, config.idempotencyKeyRetentionHours).catch((error) =>
        log.error('pruning idempotency keys failed', error),
      );
    }, 3_600_000);
    prune.unref();
    // Usage rollups: compacted now (off the start-up path) and then every STATS_COMPACTION_INTERVAL_SECONDS; safe on
    // every instance (one compacts, the others skip). Stopped by services.close().
    services.compactor.start();

    let stopping = false;
    shutdown = async (signal: string) => {
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
  } catch (error) {
    if (error instanceof Interrupted) log.info(`${error.message}: stopped during start-up`);
    else if (error instanceof StartupError) process.stderr.write(`request-token: ${error.message}\n`);
    else log.error('start-up failed', error);
    await cleanUp().catch((cleanUpError) => log.error('stopping after a failed start-up failed', cleanUpError));
    process.exit(error instanceof Interrupted ? 0 : 1);
  }
}

class Interrupted extends Error {}

/**
 * Under `npm start`, npm is the parent: when npm dies without passing a signal on (kill -9, a closed terminal), the
 * service would be left serving with no one to stop it. It notices that its parent changed and shuts down. (A
 * service started directly, by systemd or a container runtime, keeps running whatever its parent does.)
 */
function watchParent(onGone: (reason: string) => void): void {
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid !== parent) {
      clearInterval(timer);
      onGone('npm (the parent process) exited');
    }
  }, 500);
  timer.unref();
}

/** Known ways the first connection fails, as one line saying what to do; anything else keeps its stack. */
function explainDatabaseError(error: unknown, source: string): unknown {
  const code = (error as { code?: string }).code;
  const where = source === 'DATABASE_URL' ? 'the database in DATABASE_URL' : source;
  const message =
    code === 'ECONNREFUSED'
      ? `cannot connect to ${where} (connection refused): is PostgreSQL running there?`
      : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
        ? `cannot resolve the host of DATABASE_URL: check its spelling`
        : code === 'ETIMEDOUT'
          ? `cannot connect to ${where} (timed out): check the host, port and firewall`
          : code === '28P01' || code === '28000'
            ? `${where} refused the user or password: check the credentials in DATABASE_URL`
            : code === '3D000'
              ? `the database named in DATABASE_URL does not exist: create it (createdb) or fix the URL`
              : code === '42501'
                ? `the user of ${where} lacks a privilege (permission denied): give it a database it owns, or CREATEDB to make one`
                : null;
  return message ? new StartupError(message, { cause: error }) : error;
}

function explainFileError(error: unknown, dataDir: string): unknown {
  const code = (error as { code?: string }).code;
  if (code === 'EACCES' || code === 'EROFS' || code === 'EPERM') {
    return new StartupError(`cannot write to DATA_DIR (${dataDir}, ${code}): set DATA_DIR to a folder this user may write`, {
      cause: error,
    });
  }
  return error;
}

void main();
