import type { MikroORM } from '@mikro-orm/postgresql';
import type pg from 'pg';
import type { Config } from './config.js';
import type { JwtCodec } from './domain/jwt.js';
import type { IssueBatcher } from './domain/issue-batch.js';
import type { RedeemBatcher } from './domain/redeem-batch.js';
import type { LogPartitionUpkeep } from './domain/log-partitions.js';
import type { RefusalLog } from './domain/refusal-log.js';
import { tenantOf, type Authenticator, type Caller, type Tenant } from './domain/api-keys.js';

/** What the process holds once: built by the composition root (server/main.ts) or a test. */
export interface Services {
  config: Config;
  orm: MikroORM;
  pool: pg.Pool;
  codec: JwtCodec;
  authenticator: Authenticator;
  log: Logger;
  /** Batched, off-request-path writer of refusals that no token can be tied to. */
  refusalLog: RefusalLog;
  /** Batches successful redemptions under load; null: one statement each (REDEEM_BATCH_MAX=1). */
  redeemBatcher: RedeemBatcher | null;
  /** Keeps the log's coming months' partitions created, and keeps a retention's month drop until done; absent where nothing writes the log. */
  logPartitions?: LogPartitionUpkeep;
  /** Batches createRequestToken calls under load; null: one statement each (ISSUE_BATCH_MAX=1). */
  issueBatcher: IssueBatcher | null;
}

export interface Logger {
  info(message: string): void;
  error(message: string, error?: unknown): void;
}

/** A GraphQL request's context. Needs no HTTP request, so tests can build one directly. */
export interface Context extends Services {
  caller: Caller;
  /** The caller's client, or null for admin keys (every tenant). Pass it to every service function that reads or writes. */
  tenant: Tenant;
}

export function createContext(services: Services, caller: Caller): Context {
  // Spelled out rather than spread: one per request, and the spread was a few per cent of a refusal's CPU time.
  const { config, orm, pool, codec, authenticator, log, refusalLog, redeemBatcher, issueBatcher, logPartitions } = services;
  return {
    config, orm, pool, codec, authenticator, log, refusalLog, redeemBatcher, issueBatcher, logPartitions, caller,
    tenant: tenantOf(caller),
  };
}
