import { resolve } from 'node:path';
import { CLIENT_IP_STORAGE, type ClientIpStorage } from './domain/privacy.js';

/** Everything the service reads from its environment, validated once at start-up. */
export interface Config {
  host: string;
  port: number;
  nodeEnv: 'development' | 'production' | 'test';
  /** Null: run an embedded PostgreSQL under `dataDir`. */
  databaseUrl: string | null;
  dataDir: string;
  embeddedPgPort: number;
  dbPoolSize: number;
  /** How long a request may wait for a pool connection (or a new one) before failing with a retryable error. */
  dbPoolTimeoutMs: number;
  /** PostgreSQL statement_timeout for every connection of the service. */
  dbStatementTimeoutMs: number;
  /** PostgreSQL lock_timeout: a row locked elsewhere gives a retryable error after this long, not a hang. */
  dbLockTimeoutMs: number;
  /** Deadline for a graceful shutdown (SIGTERM/SIGINT): in-flight requests get this long, then the process exits. */
  shutdownTimeoutMs: number;
  /** Idempotency keys of redemptions are honoured this long (at least 24 hours, as the API promises), then pruned. */
  idempotencyKeyRetentionHours: number;
  /** Null in development until a secret is generated and kept under `dataDir`. */
  secret: string | null;
  adminKey: string | null;
  defaultMaxUses: number;
  sessionTokenExpiryMinutes: number;
  /** Accepted difference between clocks, in seconds, for not-before and expiry. */
  clockToleranceSeconds: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error' | 'silent';
  /**
   * Plain JSON POSTs take the lean GraphQL path (server/http/graphql-fast-path.ts) with operations compiled by graphql-jit
   * ('jit'), or run by Yoga's executor ('on'); 'off' sends everything through Yoga. 'prepared' (the default) is 'jit'
   * where a document Yoga has validated before runs as a prepared operation (server/http/prepared-operations.ts).
   */
  graphqlFastPath: 'prepared' | 'jit' | 'on' | 'off';
  /** Automatic persisted queries (server/http/persisted-queries.ts): a known document's hash in place of its text. */
  persistedQueries: boolean;
  /** How often refusals that cannot be tied to a token are written, in batches, to the log. */
  refusalLogFlushMs: number;
  /** A flush starts as soon as this many such refusals wait, without waiting for the timer; 0: the timer only. */
  refusalLogFlushRows: number;
  /** The log's monthly partitions are kept created this many months past the current one. */
  logPartitionsAhead: number;
  /** How often the usage rollups are compacted (server/domain/usage-rollups.ts); 0: never by the service (use cron). */
  statsCompactionIntervalSeconds: number;
  /** Successful redemptions per statement at most while the pool is busy (micro-batching); 1: one statement each. */
  redeemBatchMax: number;
  /** createRequestToken calls per shared INSERT at most (server/domain/issue-batch.ts); 1: one statement each. */
  issueBatchMax: number;
  /**
   * How far V8 lets the heap grow past what survived the last full collection, in per cent (V8's
   * --heap-growing-percent); 0 leaves V8's own policy, which under load let the heap grow to 2-3 times what survived.
   */
  heapGrowingPercent: number;
  /**
   * Encrypts signing keys at rest (AES-256-GCM). Null: a key derived from the signing secret (set a separate one in
   * production, so that a leaked secret does not also open the stored keys).
   */
  keyEncryptionKey: string | null;
  /** How client IPs are kept in the log. */
  clientIpStorage: ClientIpStorage;
  clientIpHashSalt: string | null;
  /** Requests per minute per API key (a key's own limit wins); 0: unlimited. */
  rateLimitPerMinute: number;
  /** Larger request bodies are answered 413 before they are read. */
  maxBodyBytes: number;
  /** Introspection (and GraphiQL, which needs it): on outside production unless configured. */
  introspection: boolean;
  /** Browser origins allowed to call the API cross-origin (CORS, never with credentials); empty: CORS is off. */
  corsOrigins: string[];
  /** A client must send its request headers within this long, and its whole request within httpRequestTimeoutMs. */
  httpHeadersTimeoutMs: number;
  httpRequestTimeoutMs: number;
  /** Open connections per client address at most (further ones are answered 429 and closed); 0: no cap. */
  maxConnectionsPerClient: number;
  /** The largest cost (about the rows a query may touch, page sizes from its variables included) of one operation. */
  maxQueryCost: number;
  /** Started by `npm start` (npm sets npm_lifecycle_event): the service stops when npm, its parent, is gone. */
  launchedByNpm: boolean;
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

function intVar(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(name, `expected a whole number, got "${raw}"`);
  const value = Number(raw.trim());
  if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(name, `must be one of ${allowed.join(', ')}, got "${raw}"`);
  }
  return raw as T;
}

export const MIN_SECRET_BYTES = 32;
export const API_KEY_PATTERN = /^rt_[A-Za-z0-9]{8,32}_[A-Za-z0-9_-]{32,128}$/;

/** Reads and validates the environment. Throws a ConfigError naming the first bad variable. */
export function loadConfig(env: Env = process.env): Config {
  const nodeEnv = oneOf(env, 'NODE_ENV', ['development', 'production', 'test'] as const, 'development');

  const databaseUrl = env.DATABASE_URL?.trim() || null;
  if (databaseUrl && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError('DATABASE_URL', 'must be a postgres:// or postgresql:// URL');
  }

  const secret = env.REQUEST_TOKEN_SECRET || null;
  if (secret !== null && Buffer.byteLength(secret, 'utf8') < MIN_SECRET_BYTES) {
    throw new ConfigError('REQUEST_TOKEN_SECRET', `must be at least ${MIN_SECRET_BYTES} bytes long`);
  }
  const adminKey = env.REQUEST_TOKEN_ADMIN_KEY || null;
  if (adminKey !== null && !API_KEY_PATTERN.test(adminKey)) {
    throw new ConfigError(
      'REQUEST_TOKEN_ADMIN_KEY',
      'must look like rt_<id>_<secret> (generate one with `npm run --silent keygen`)',
    );
  }
  if (nodeEnv === 'production') {
    if (!secret) throw new ConfigError('REQUEST_TOKEN_SECRET', 'is required when NODE_ENV=production');
    if (!adminKey) throw new ConfigError('REQUEST_TOKEN_ADMIN_KEY', 'is required when NODE_ENV=production');
  }

  const keyEncryptionKey = env.REQUEST_TOKEN_KEY_ENCRYPTION_KEY || null;
  if (keyEncryptionKey !== null && Buffer.byteLength(keyEncryptionKey, 'utf8') < MIN_SECRET_BYTES) {
    throw new ConfigError('REQUEST_TOKEN_KEY_ENCRYPTION_KEY', `must be at least ${MIN_SECRET_BYTES} bytes long`);
  }
  const clientIpStorage = oneOf(env, 'CLIENT_IP_STORAGE', CLIENT_IP_STORAGE, 'full');
  const clientIpHashSalt = env.CLIENT_IP_HASH_SALT || null;
  if (clientIpStorage === 'hashed' && (clientIpHashSalt === null || clientIpHashSalt.length < 16)) {
    throw new ConfigError('CLIENT_IP_HASH_SALT', 'must be at least 16 characters when CLIENT_IP_STORAGE=hashed');
  }
  const introspectionRaw = oneOf(env, 'GRAPHQL_INTROSPECTION', ['true', 'false'] as const, nodeEnv === 'production' ? 'false' : 'true');

  const host = env.HOST?.trim() || '127.0.0.1';
  const sessionTokenExpiryMinutes = intVar(env, 'SESSION_TOKEN_EXPIRY_MINUTES', 10, 1, 60 * 24 * 365);
  const dbStatementTimeoutMs = intVar(env, 'DB_STATEMENT_TIMEOUT_MS', 5_000, 100, 600_000);
  const dbLockTimeoutMs = intVar(env, 'DB_LOCK_TIMEOUT_MS', 2_000, 10, 600_000);
  if (dbLockTimeoutMs >= dbStatementTimeoutMs) {
    throw new ConfigError('DB_LOCK_TIMEOUT_MS', `must be less than DB_STATEMENT_TIMEOUT_MS (${dbStatementTimeoutMs})`);
  }

  const corsOrigins = (env.CORS_ORIGINS ?? '')
    .split(',')
    .map((o) => o.trim())
    .filter((o) => o !== '');
  for (const origin of corsOrigins) {
    let parsed: URL | null = null;
    try {
      parsed = new URL(origin);
    } catch {
      // reported below
    }
    if (!parsed || (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') || parsed.origin !== origin) {
      throw new ConfigError('CORS_ORIGINS', `expected comma-separated origins like https://app.example.com, got "${origin}"`);
    }
  }
  const httpHeadersTimeoutMs = intVar(env, 'HTTP_HEADERS_TIMEOUT_MS', 10_000, 100, 600_000);
  const httpRequestTimeoutMs = intVar(env, 'HTTP_REQUEST_TIMEOUT_MS', 30_000, 100, 3_600_000);
  if (httpRequestTimeoutMs < httpHeadersTimeoutMs) {
    throw new ConfigError('HTTP_REQUEST_TIMEOUT_MS', `must be at least HTTP_HEADERS_TIMEOUT_MS (${httpHeadersTimeoutMs})`);
  }

  return {
    host,
    port: intVar(env, 'PORT', 4000, 0, 65535),
    nodeEnv,
    databaseUrl,
    dataDir: resolve(env.DATA_DIR?.trim() || '.data'),
    embeddedPgPort: intVar(env, 'EMBEDDED_PG_PORT', 54329, 1, 65535),
    dbPoolSize: intVar(env, 'DB_POOL_SIZE', 10, 1, 1000),
    dbPoolTimeoutMs: intVar(env, 'DB_POOL_TIMEOUT_MS', 2_000, 10, 600_000),
    dbStatementTimeoutMs,
    dbLockTimeoutMs,
    shutdownTimeoutMs: intVar(env, 'SHUTDOWN_TIMEOUT_MS', 10_000, 100, 600_000),
    idempotencyKeyRetentionHours: intVar(env, 'IDEMPOTENCY_KEY_RETENTION_HOURS', 168, 24, 24 * 3650),
    secret,
    adminKey,
    defaultMaxUses: intVar(env, 'DEFAULT_MAX_USES', 1, 1, 2_147_483_647),
    sessionTokenExpiryMinutes,
    clockToleranceSeconds: intVar(env, 'CLOCK_TOLERANCE_SECONDS', 0, 0, 3600),
    logLevel: oneOf(env, 'LOG_LEVEL', ['debug', 'info', 'warn', 'error', 'silent'] as const, 'info'),
    graphqlFastPath: oneOf(env, 'GRAPHQL_FAST_PATH', ['prepared', 'jit', 'on', 'off'] as const, 'prepared'),
    persistedQueries: oneOf(env, 'PERSISTED_QUERIES', ['on', 'off'] as const, 'on') === 'on',
    refusalLogFlushMs: intVar(env, 'REFUSAL_LOG_FLUSH_MS', 250, 10, 600_000),
    refusalLogFlushRows: intVar(env, 'REFUSAL_LOG_FLUSH_ROWS', 1000, 0, 100_000),
    logPartitionsAhead: intVar(env, 'LOG_PARTITIONS_AHEAD', 3, 1, 120),
    statsCompactionIntervalSeconds: intVar(env, 'STATS_COMPACTION_INTERVAL_SECONDS', 60, 0, 86_400),
    redeemBatchMax: intVar(env, 'REDEEM_BATCH_MAX', 64, 1, 1000),
    issueBatchMax: intVar(env, 'ISSUE_BATCH_MAX', 64, 1, 1000),
    heapGrowingPercent: intVar(env, 'HEAP_GROWING_PERCENT', 100, 0, 1000),
    keyEncryptionKey,
    clientIpStorage,
    clientIpHashSalt,
    rateLimitPerMinute: intVar(env, 'RATE_LIMIT_PER_MINUTE', 0, 0, 100_000_000),
    maxBodyBytes: intVar(env, 'MAX_BODY_BYTES', 256 * 1024, 1024, 100 * 1024 * 1024),
    introspection: introspectionRaw === 'true',
    corsOrigins,
    httpHeadersTimeoutMs,
    httpRequestTimeoutMs,
    maxConnectionsPerClient: intVar(env, 'MAX_CONNECTIONS_PER_CLIENT', 256, 0, 1_000_000),
    maxQueryCost: intVar(env, 'MAX_QUERY_COST', 5_000, 1, 10_000_000),
    launchedByNpm: Boolean(env.npm_lifecycle_event),
  };
}
