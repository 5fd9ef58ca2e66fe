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

/**
 * A lost node answered by the server that relays it, without the SQLSTATE that says so. Citus's coordinator reports
 * its link to a worker that was stopped or killed mid-statement with internal_error (XX000): libpq gives such a result
 * no SQLSTATE (`SSL SYSCALL error: EOF detected`, `server closed the connection unexpectedly`, from ReportResultError,
 * "while executing command on host:port"); a COPY to a shard (a multi-shard INSERT … SELECT) passes the worker's
 * message on without its code (`terminating connection due to administrator command`), or says `failed to COPY to
 * shard N on host:port` or `failed to complete COPY on host:port` (io_error, 58030); and a worker lost under a
 * transaction that may have been committing ends it with one of COMMIT_LOST's messages. The same loss before a command
 * was sent or while connecting comes as 08006 instead. Any other XX000 or 58030 stays a bug (or a disk's failure).
 */
const RELAYED_LOSS =
  /^(server closed the connection unexpectedly|SSL SYSCALL error|SSL error|SSL connection has been closed unexpectedly|could not receive data from server|could not send data to server|connection not open|no connection to the server|invalid socket|terminating connection (due to|because of) |the database system is (shutting down|starting up|in recovery mode|not yet accepting connections|not accepting connections))/;
const RELAYED_COPY_LOSS = /^failed to (complete COPY on|COPY to shard \d+ on) /;
/**
 * Citus: a worker went away while its part of the transaction was (or may have been) committed (commitOutcomeUnknown):
 * `could not commit transaction for shard N on at least one active node` (ErrorIfPostCommitFailedShardPlacements), or,
 * from a connection Citus marked essential to the transaction (MarkRemoteTransactionFailed, also while committing),
 * `failure on connection marked as essential: host:port`.
 */
const COMMIT_LOST =
  /^(could not commit transaction (for shard \d+ on at least one active node|on any active nodes?)\b|failure on connection marked as essential: )/;

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
  if (code === 'XX000' && (RELAYED_LOSS.test(String(error.message)) || COMMIT_LOST.test(String(error.message)))) {
    return 'DATABASE_UNAVAILABLE';
  }
  if (code === '58030' && RELAYED_COPY_LOSS.test(String(error.message))) return 'DATABASE_UNAVAILABLE';
  const message = typeof error.message === 'string' ? error.message : '';
  // pg-pool's connectionTimeoutMillis and knex's acquireConnectionTimeout.
  if (message === 'timeout exceeded when trying to connect' || error.name === 'KnexTimeoutError') return 'POOL_EXHAUSTED';
  // A redemption or an issue that waited too long for a batch connection (redeem-batch.ts, issue-batch.ts).
  if (error.name === 'RedeemQueueTimeout' || error.name === 'IssueQueueTimeout') return 'POOL_EXHAUSTED';
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

/**
 * Whether `error` leaves it unknown if the statement's transaction was committed: on Citus, a worker that went away
 * while its part was being committed (a transaction on one worker commits there without two-phase commit). Like a
 * connection lost during COMMIT on PostgreSQL, the client's retry is safe only with an idempotency key, and a batch
 * (micro-batch.ts) must not run its members again.
 */
export function commitOutcomeUnknown(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown } | null;
  return e?.code === 'XX000' && COMMIT_LOST.test(String(e.message));
}
