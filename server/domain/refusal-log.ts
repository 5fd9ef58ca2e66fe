import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { RejectionCode } from './errors.js';
import { NO_TOKEN_ID } from '../database/entities/request-token-log.js';
import { markStaleTimesSql } from './usage-rollups.js';
import { checkout } from '../database/checkout.js';

/** One redemption attempt refused before it could be tied to a token (malformed JWT, bad signature). */
export interface UntiedRefusal {
  code: RejectionCode;
  userId: string | null;
  clientIp: string | null;
  userAgent: string | null;
  /** The caller's client (tenant); null for an admin key. */
  clientId: string | null;
}

export interface RefusalLog {
  /**
   * Queues the attempt's log row without waiting on the database. Returns its log id when ids are reserved ahead
   * (`reserve` > 0) and one is left, else null: the row is still written, with an id given when it is written.
   */
  record(refusal: UntiedRefusal, at?: Date): string | null;
  /** Writes every queued row now. */
  flush(): Promise<void>;
  /** Makes sure the row with this id, if still queued, is written (before it is updated or read back). */
  settle(id: string): Promise<void>;
  /** Waits for the first block of ids. */
  ready(): Promise<void>;
  /** Flushes and stops the timer; rows recorded later are written by the next flush() call. */
  close(): Promise<void>;
}

export interface RefusalLogOptions {
  flushMs: number;
  /**
   * A flush starts as soon as this many rows wait (and none is under way), not only on the timer: under a flood,
   * smaller writes more often rather than one burst of PostgreSQL work every `flushMs`. 0: the timer only.
   */
  flushRows?: number;
  /** Ids reserved per round trip, a refill starting when half are used; 0 (default): none. */
  reserve?: number;
  /** Rows per COPY (per transaction). */
  batch?: number;
  /** Past this many queued rows (the database is down, or a flood), new attempts are counted and dropped. */
  maxPending?: number;
  onError(message: string, error?: unknown): void;
}

interface Row {
  id: string | null;
  refusal: UntiedRefusal;
  at: Date;
}

const SEQUENCE = `pg_get_serial_sequence('request_token_log', 'id')`;

// Rows are written with COPY, which costs PostgreSQL about half of what the multi-row INSERT it replaced did
// (json_to_recordset, then the stale-hour check over every inserted row; `npx tsx bench/refusal-cost.ts`): rows with
// a reserved id carry it, the others get theirs from the column's default (the sequence), as an INSERT would.
// Their token_id is NO_TOKEN_ID (the log has no null token).
const COPY_COLUMNS = 'token_id, error_code, user_id, client_ip, user_agent, timestamp, client_id';
const COPY_SQL = `copy request_token_log (${COPY_COLUMNS}) from stdin`;
const COPY_WITH_IDS_SQL = `copy request_token_log (id, ${COPY_COLUMNS}) from stdin`;
const SPECIAL = /[\\\t\n\r]/;
/** A value as a field of COPY's text format (most need no escaping: checked first). */
const copyField = (v: string | null) =>
  v === null
    ? '\\N'
    : SPECIAL.test(v)
      ? v.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r')
      : v;
/**
 * The rows as COPY's text format, one line each, in one string. A flood repeats itself (the same code, address, agent
 * and client, many attempts in one millisecond), so the fields of the row before are reused when they are the same.
 */
const copyText = (rows: Row[], withIds: boolean) => {
  let text = '';
  let last: UntiedRefusal | null = null;
  let fields = '';
  let lastMs = Number.NaN;
  let time = '';
  for (const { id, refusal: r, at } of rows) {
    if (
      last === null ||
      r.code !== last.code ||
      r.userId !== last.userId ||
      r.clientIp !== last.clientIp ||
      r.userAgent !== last.userAgent ||
      r.clientId !== last.clientId
    ) {
      fields = `${copyField(r.code)}\t${copyField(r.userId)}\t${copyField(r.clientIp)}\t${copyField(r.userAgent)}`;
      last = r;
    }
    const ms = at.getTime();
    if (ms !== lastMs) {
      time = at.toISOString();
      lastMs = ms;
    }
    text += `${withIds ? `${id}\t` : ''}${NO_TOKEN_ID}\t${fields}\t${time}\t${copyField(last.clientId)}\n`;
  }
  return text;
};

/**
 * Refusals that no token can be tied to are the cheapest attack on the service (anyone can send garbage), so they
 * never touch the database on the request path: each attempt still gets its own log row, but rows are queued in
 * memory and written in batches (one COPY per flush) off the request path, and on shutdown.
 */
export function createRefusalLog(pool: pg.Pool, options: RefusalLogOptions): RefusalLog {
  // No ids reserved by default: reserved ids would be older than rows written meanwhile, and pages of the log run
  // newest first by id. An id is then given when the row is written (logId null in the response).
  const reserve = options.reserve ?? 0;
  const batch = options.batch ?? 5000;
  const maxPending = options.maxPending ?? 100_000;
  const flushRows = options.flushRows ?? 0;
  // Flushes started and not finished; and whether the last write failed (then only the timer retries, rather than
  // every new row while the database is away).
  let inFlight = 0;
  let failing = false;
  let ids: string[] = [];
  let refilling: Promise<void> | null = null;
  let queue: Row[] = [];
  const queuedIds = new Set<string>();
  let dropped = 0;
  let writing: Promise<void> = Promise.resolve();
  let closed = false;

  const refill = () => {
    refilling ??= pool
      .query({
        name: 'reserve-log-ids',
        text: `select nextval(${SEQUENCE})::text as id from generate_series(1, $1)`,
        values: [reserve],
      })
      .then(({ rows }) => {
        // Kept descending, so that pop() hands out the lowest id first.
        ids = rows.map((r) => r.id as string).reverse().concat(ids);
      })
      .catch((error) => options.onError('could not reserve log ids for refusals', error))
      .finally(() => {
        refilling = null;
      });
    return refilling;
  };
  const initial = reserve > 0 ? refill() : Promise.resolve();

  // Rows carry the time of the attempt, not of the write: a row written after its hour was sealed for the usage
  // rollups (the database was away for a while) marks that hour stale, in the same transaction
  // (server/domain/usage-rollups.ts).
  async function copy(rows: Row[]): Promise<void> {
    const reserved = rows.filter((r) => r.id !== null);
    const given = reserved.length === rows.length ? [] : rows.filter((r) => r.id === null);
    const client = await checkout(pool);
    try {
      await client.query('begin');
      if (reserved.length) await pipeline(Readable.from([copyText(reserved, true)]), client.query(copyFrom(COPY_WITH_IDS_SQL)));
      if (given.length) await pipeline(Readable.from([copyText(given, false)]), client.query(copyFrom(COPY_SQL)));
      // The stale hours and the commit in one round trip (a simple query of two statements).
      const stale = markStaleTimesSql(rows.map((r) => r.at));
      await client.query(stale ? `${stale}; commit` : 'commit');
      client.release();
    } catch (error) {
      await client.query('rollback').catch(() => {});
      client.release(error as Error);
      throw error;
    }
  }

  async function writeQueued(): Promise<void> {
    while (queue.length > 0) {
      const rows = queue.slice(0, batch);
      try {
        await copy(rows);
      } catch (error) {
        options.onError(`could not write ${rows.length} refusal log rows; keeping them for the next flush`, error);
        failing = true;
        return;
      }
      failing = false;
      queue = queue.slice(rows.length);
      for (const r of rows) if (r.id !== null) queuedIds.delete(r.id);
    }
    if (dropped > 0) {
      options.onError(`${dropped} refusal log rows were dropped: more than ${maxPending} were waiting`);
      dropped = 0;
    }
  }

  // Flushes are chained, so rows are written once and in order.
  const flush = () => {
    inFlight++;
    return (writing = writing.then(writeQueued).finally(() => void inFlight--));
  };

  const timer = setInterval(() => {
    if (queue.length > 0) void flush();
  }, options.flushMs);
  timer.unref();

  return {
    record(refusal, at = new Date()) {
      if (queue.length >= maxPending) {
        dropped++;
        return null;
      }
      const id = ids.pop() ?? null;
      if (reserve > 0 && ids.length < reserve / 2 && !closed) void refill();
      queue.push({ id, refusal, at });
      if (id !== null) queuedIds.add(id);
      if (flushRows > 0 && queue.length >= flushRows && inFlight === 0 && !failing && !closed) void flush();
      return id;
    },
    flush,
    async settle(id) {
      if (queuedIds.has(id)) await flush();
    },
    ready: () => initial,
    async close() {
      closed = true;
      clearInterval(timer);
      await refilling;
      await flush();
    },
  };
}
