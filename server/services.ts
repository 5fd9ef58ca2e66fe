import type { Config } from './config.js';
import type { Logger, Services } from './context.js';
import { initDatabase, type Database } from './database/db.js';
import { createAuthenticator } from './domain/api-keys.js';
import { startCitus, type CitusStartup } from './domain/citus.js';
import { resolveSecret } from './domain/bootstrap.js';
import { createJwtCodec } from './domain/jwt.js';
import { redeemBatcherFor } from './domain/redeem-batch.js';
import { issueBatcherFor } from './domain/issue-batch.js';
import { createRefusalLog } from './domain/refusal-log.js';
import { ensureComingLogPartitions, startLogPartitionUpkeep, type LogPartitionUpkeep } from './domain/log-partitions.js';
import { transientReason } from './database/db-errors.js';
import { loadKeyRing } from './domain/signing-keys.js';
import { createRollupCompactor, type RollupCompactor } from './domain/usage-rollups.js';

export interface ServiceOptions {
  log: Logger;
  /** The database to use; default `config.databaseUrl` (server/main.ts passes the embedded database's). */
  databaseUrl?: string;
  /** Turns a failure to connect or migrate into the error to report (server/main.ts: one line for the operator). */
  explainDatabaseError?: (error: unknown) => unknown;
  /** The same for a failure to read or write the development secret under DATA_DIR. */
  explainSecretError?: (error: unknown) => unknown;
}

/** The services with what they hold open: the database, and `close` for all of it. */
export interface RunningServices extends Services {
  db: Database;
  /** The usage rollups' compaction: server/main.ts starts its timer (tests compact when they choose). */
  compactor: RollupCompactor;
  /** What start-up found of Citus: the layout (null on plain PostgreSQL), and whether hot statements are delegated. */
  citus: CitusStartup;
  /** Writes queued refusal log rows, stops the key ring's refresh and closes the database's connections. */
  close(): Promise<void>;
}

/**
 * The one wiring of the service: config → database (migrated, the log's coming months created) → signing-key ring and codec → API-key authenticator,
 * refusal log writer and redemption batcher. server/main.ts and the test harness both build their services here; the
 * HTTP app is then `createApp(services)` (server/http/app.ts, which builds the GraphQL schema into it).
 */
export async function createServices(config: Config, options: ServiceOptions): Promise<RunningServices> {
  const { log } = options;
  const url = options.databaseUrl ?? config.databaseUrl;
  if (!url) throw new Error('createServices needs a database URL (DATABASE_URL, or the embedded database)');
  const db = await initDatabase(url, config, log.info).catch((error) => {
    throw options.explainDatabaseError ? options.explainDatabaseError(error) : error;
  });
  let codec: Services['codec'] | null = null;
  let logPartitions: LogPartitionUpkeep | null = null;
  try {
    const citus = await startCitus(db.pool, log.info);
    if (citus.routed && db.batchPool) {
      // On Citus each redemption is one delegated call to its token's worker; a micro-batch would span shards (see
      // docs/scaling.md, "Citus"), so redemptions go one statement each and the batch connections are not needed.
      await db.batchPool.end();
      db.batchPool = null;
    }
    // The log's coming months exist before the first request (and a timer keeps them ahead: server/domain/log-partitions.ts).
    const created = await ensureComingLogPartitions(db.pool, config.logPartitionsAhead);
    if (created.length) log.info(`created log partitions ${created.join(', ')}`);
    logPartitions = startLogPartitionUpkeep(db.pool, {
      monthsAhead: config.logPartitionsAhead,
      onCreated: (names) => log.info(`created log partitions ${names.join(', ')}`),
      onError: log.error,
    });
    const upkeep = logPartitions;
    const secret = await resolveSecret(config, log.info).catch((error) => {
      throw options.explainSecretError ? options.explainSecretError(error) : error;
    });
    codec = await createJwtCodec(
      await loadKeyRing({ pool: db.pool, secret, encryptionKey: config.keyEncryptionKey ?? secret }),
    );
    const refusalLog = createRefusalLog(db.pool, {
      flushMs: config.refusalLogFlushMs,
      flushRows: config.refusalLogFlushRows,
      onError(message, error) {
        log.error(message, error);
        if (transientReason(error) === 'LOG_PARTITION_MISSING') upkeep.nudge();
      },
    });
    await refusalLog.ready();
    const ring = codec.ring;
    const redeemBatcher = redeemBatcherFor(db, config);
    const compactor = createRollupCompactor(db.pool, {
      intervalMs: config.statsCompactionIntervalSeconds * 1000,
      onError: log.error,
      onDone(result) {
        if (result.waitedOut) {
          log.info('usage rollups: transactions older than the seal still ran after 60 s; compacting again next time');
        }
      },
    });
    return {
      config,
      orm: db.orm,
      pool: db.pool,
      codec,
      authenticator: createAuthenticator(),
      log,
      refusalLog,
      redeemBatcher,
      logPartitions: upkeep,
      issueBatcher: issueBatcherFor(db, config),
      db,
      compactor,
      citus,
      async close() {
        await compactor.stop();
        await upkeep.stop();
        // Queued refusal log rows are written before the pool closes.
        await refusalLog.close();
        ring.close();
        redeemBatcher?.close();
        await db.close();
      },
    };
  } catch (error) {
    await logPartitions?.stop();
    codec?.ring.close();
    await db.close();
    throw error;
  }
}
