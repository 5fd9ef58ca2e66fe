import pg from 'pg';
import { checkout } from '../database/checkout.js';

/**
 * The log's monthly partitions (`request_token_log` is `PARTITION BY RANGE ("timestamp")`, see the entity). One per
 * calendar month in UTC, named `request_token_log_yYYYYmMM`, covering [first instant of the month, first of the next).
 * There is no DEFAULT partition: the service keeps the coming months created ahead (at start-up, on a timer, and
 * `npx request-token partitions ensure` for cron), and whatever writes old timestamps (the Django import) creates the
 * months it needs first. An insert that still finds no partition is a 503 (server/database/db-errors.ts), not a 500.
 */

export const LOG_TABLE = 'request_token_log';
/** Months created ahead of the current one by default. */
export const DEFAULT_MONTHS_AHEAD = 3;
/**
 * One key for every instance's upkeep and retention (pg_advisory_xact_lock): creating and dropping months take turns
 * instead of racing.
 */
export const UPKEEP_LOCK = 0x72746c70; // 'rtlp'

/** The first instant (UTC) of `at`'s month, `add` months on. */
export function monthStart(at: Date, add = 0): Date {
  return new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + add, 1));
}

export function partitionName(month: Date): string {
  return `${LOG_TABLE}_y${month.getUTCFullYear()}m${String(month.getUTCMonth() + 1).padStart(2, '0')}`;
}

/** The month a partition name stands for, or null for a name that is not one of ours. */
export function monthOfPartition(name: string): Date | null {
  const match = /^request_token_log_y(\d{4})m(\d{2})$/.exec(name);
  if (!match) return null;
  const month = Number(match[2]);
  return month >= 1 && month <= 12 ? new Date(Date.UTC(Number(match[1]), month - 1, 1)) : null;
}

/** Every month from `from`'s through `to`'s (inclusive), as month starts. */
export function monthsBetween(from: Date, to: Date): Date[] {
  const months: Date[] = [];
  for (let m = monthStart(from); m <= to; m = monthStart(m, 1)) months.push(m);
  return months;
}

export interface LogPartition {
  name: string;
  /** Inclusive. */
  from: Date;
  /** Exclusive. */
  to: Date;
}

type Queryable = pg.Pool | pg.PoolClient | pg.Client;

/** The log's partitions, oldest first, with their bounds as PostgreSQL holds them. */
export async function listLogPartitions(db: Queryable): Promise<LogPartition[]> {
  const { rows } = await db.query<{ name: string; bound: string }>(
    `select c.relname as name, pg_get_expr(c.relpartbound, c.oid) as bound
     from pg_inherits i join pg_class c on c.oid = i.inhrelid
     where i.inhparent = '${LOG_TABLE}'::regclass`,
  );
  return rows
    .map(({ name, bound }) => {
      const [, from, to] = /FROM \('([^']+)'\) TO \('([^']+)'\)/.exec(bound) ?? [];
      return { name, from: new Date(from), to: new Date(to) };
    })
    .sort((a, b) => a.from.getTime() - b.from.getTime());
}

const utc = (d: Date) => d.toISOString();

/**
 * Creates the partitions of every month from `from`'s through `to`'s that are missing; returns the names created.
 * Safe from several instances at once: creations take turns under one advisory lock and look again once they hold it.
 * Nothing is locked when every month exists (the usual case). A month is created as a table of its own and then
 * attached, which locks the log only against other DDL (SHARE UPDATE EXCLUSIVE): redemptions keep writing meanwhile.
 *
 * With a pool it takes a client; the work runs in a transaction of its own, or, with `inTransaction`, in the one the
 * given client has open (the Django import creates its months inside its own transaction so).
 */
export async function ensureLogPartitions(
  db: Queryable,
  range: { from: Date; to: Date },
  options: { inTransaction?: boolean } = {},
): Promise<string[]> {
  const wanted = monthsBetween(range.from, range.to);
  const missing = (existing: LogPartition[]) => {
    const names = new Set(existing.map((p) => p.name));
    return wanted.filter((m) => !names.has(partitionName(m)));
  };
  if (missing(await listLogPartitions(db)).length === 0) return [];
  const pooled = db instanceof pg.Pool;
  const client = pooled ? await checkout(db) : db;
  const own = !options.inTransaction;
  try {
    if (own) await client.query('begin');
    // On Citus the new table and its attachment touch every shard of the log, which has a foreign key to a reference
    // table: Citus then needs one connection per node for the transaction. A harmless custom setting elsewhere.
    await client.query(`set local citus.multi_shard_modify_mode to 'sequential'`);
    await client.query('select pg_advisory_xact_lock($1)', [UPKEEP_LOCK]);
    const created: string[] = [];
    for (const month of missing(await listLogPartitions(client))) {
      const name = partitionName(month);
      await client.query(`create table "${name}" (like "${LOG_TABLE}" including defaults)`);
      await client.query(
        `alter table "${LOG_TABLE}" attach partition "${name}" for values from ('${utc(month)}') to ('${utc(monthStart(month, 1))}')`,
      );
      created.push(name);
    }
    if (own) await client.query('commit');
    return created;
  } catch (error) {
    if (own) await client.query('rollback').catch(() => {});
    throw error;
  } finally {
    if (pooled) (client as pg.PoolClient).release();
  }
}

/** The current month's partition and `monthsAhead` more (default 3), on the database's clock. */
export async function ensureComingLogPartitions(db: pg.Pool | pg.Client, monthsAhead = DEFAULT_MONTHS_AHEAD): Promise<string[]> {
  const { rows } = await db.query<{ now: Date }>('select now() as now');
  const now = rows[0].now;
  return ensureLogPartitions(db, { from: now, to: monthStart(now, monthsAhead) });
}

export interface LogPartitionUpkeep {
  /** Runs one round now (the timer's rounds meanwhile are skipped); resolves with the partitions it created. */
  run(): Promise<string[]>;
  /** Asks for a round soon, without waiting (an insert found no partition). At most one round runs at a time. */
  nudge(): void;
  /**
   * Keeps work on the log's tables that a request did not wait for (a month retention detached, being dropped:
   * TruncateOptions.dropInBackground): a failure goes to onError as `what` failing, and stop() waits for it.
   */
  track(work: Promise<void>, what: string): void;
  /** Stops the timer and waits for a round in progress and for tracked work. */
  stop(): Promise<void>;
}

export interface LogPartitionUpkeepOptions {
  monthsAhead?: number;
  /** Between rounds; default an hour. The timer never keeps the process alive. */
  intervalMs?: number;
  onCreated?(names: string[]): void;
  onError(message: string, error: unknown): void;
}

/**
 * Keeps the coming months' partitions created, on every instance: a round every `intervalMs` (an hour) that creates
 * what is missing (ensureComingLogPartitions, safe from several instances at once), so a month exists long before its
 * first row. The service runs one round before it serves (server/services.ts) and starts this for the rest.
 */
export function startLogPartitionUpkeep(pool: pg.Pool, options: LogPartitionUpkeepOptions): LogPartitionUpkeep {
  let running: Promise<string[]> | null = null;
  let stopped = false;
  const run = () => {
    running ??= ensureComingLogPartitions(pool, options.monthsAhead ?? DEFAULT_MONTHS_AHEAD)
      .then((created) => {
        if (created.length) options.onCreated?.(created);
        return created;
      })
      .finally(() => {
        running = null;
      });
    return running;
  };
  const round = () => {
    if (!stopped) run().catch((error) => options.onError('creating the log partitions ahead failed', error));
  };
  const timer = setInterval(round, options.intervalMs ?? 3_600_000);
  timer.unref();
  const tracked = new Set<Promise<void>>();
  return {
    run,
    nudge: round,
    track(work, what) {
      const settled = work
        .catch((error) => options.onError(`${what} failed`, error))
        .finally(() => tracked.delete(settled));
      tracked.add(settled);
    },
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running?.catch(() => {});
      await Promise.all(tracked);
    },
  };
}
