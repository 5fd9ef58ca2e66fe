/**
 * Infrastructure failures a client can retry: the database is away, busy or a row is locked. They become a GraphQL
 * error with `extensions.code: "SERVICE_UNAVAILABLE"`, a `reason`, `retryable: true` and HTTP 503 with Retry-After,
 * instead of an opaque internal error. A retried redemption is safe with an idempotency key.
 */
export type TransientReason =
  | 'POOL_EXHAUSTED'
  | 'LOCK_TIMEOUT'
  | 'STATEMENT_TIMEOUT'
  | 'CONFLICT'
  | 'DATABASE_UNAVAILABLE'
  | 'LOG_PARTITION_MISSING';

export const TRANSIENT_MESSAGES: Record<TransientReason, string> = {
  POOL_EXHAUSTED: 'The service is busy: no database connection came free in time. Retry shortly.',
  LOCK_TIMEOUT: 'The token is locked by another operation. Retry shortly.',
  STATEMENT_TIMEOUT: 'The database took too long to answer. Retry shortly.',
  CONFLICT: 'A concurrent operation conflicted with this one. Retry shortly.',
  DATABASE_UNAVAILABLE: 'The database is unavailable. Retry shortly.',
  LOG_PARTITION_MISSING:
    "The log has no partition for this month yet; nothing was consumed. The service creates them ahead; retry shortly.",
};

const BY_SQLSTATE: Record<string, TransientReason> = {
  '55P03': 'LOCK_TIMEOUT', // lock_not_available (lock_timeout)
  '57014': 'STATEMENT_TIMEOUT', // query_canceled (statement_timeout)
  '40001': 'CONFLICT', // serialization_failure
  '40P01': 'CONFLICT', // deadlock_detected
  '53300': 'DATABASE_UNAVAILABLE', // too_many_connections
  '57P01': 'DATABASE_UNAVAILABLE', // admin_shutdown (pg_terminate_backend, fast shutdown)
  '57P02': 'DATABASE_UNAVAILABLE', // crash_shutdown
  '57P03': 'DATABASE_UNAVAILABLE', // cannot_connect_now (starting up, shutting down, recovering)
};

const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTCONN']);

function classifyOne(error: Record<string, any>): TransientReason | null {
  const code = typeof error.code === 'string' ? error.code : '';
  if (BY_SQLSTATE[code]) return BY_SQLSTATE[code];
  // An attempt's log row whose month has no partition (server/domain/log-partitions.ts): its statement, use and all,
  // is rolled back. check_violation is otherwise a bug, so the message decides.
  if (code === '23514' && /^no partition of relation "request_token_log" found for row/.test(String(error.message))) {
    return 'LOG_PARTITION_MISSING';
  }
  // connection_exception class, except 08P01 (protocol_violation), which is a bug.
  if (code.startsWith('08') && code !== '08P01') return 'DATABASE_UNAVAILABLE';
  if (SOCKET_CODES.has(code)) return 'DATABASE_UNAVAILABLE';
  const message = typeof error.message === 'string' ? error.message : '';
  // pg-pool's connectionTimeoutMillis and knex's acquireConnectionTimeout.
  if (message === 'timeout exceeded when trying to connect' || error.name === 'KnexTimeoutError') return 'POOL_EXHAUSTED';
  // A redemption that waited too long for a batch connection (server/domain/redeem-batch.ts).
  if (error.name === 'RedeemQueueTimeout') return 'POOL_EXHAUSTED';
  if (/^Connection terminated|not queryable|Connection ended|ended unexpectedly/i.test(message)) {
    return 'DATABASE_UNAVAILABLE';
  }
  return null;
}

/** The reason when `error` (or what it wraps: cause, MikroORM's `previous`, AggregateError) is transient, else null. */
export function transientReason(error: unknown): TransientReason | null {
  const seen = new Set<unknown>();
  const queue = [error];
  while (queue.length) {
    const next = queue.shift();
    if (!next || typeof next !== 'object' || seen.has(next)) continue;
    seen.add(next);
    const e = next as Record<string, any>;
    const reason = classifyOne(e);
    if (reason) return reason;
    queue.push(e.cause, e.previous, e.originalError, ...(Array.isArray(e.errors) ? e.errors : []));
  }
  return null;
}
