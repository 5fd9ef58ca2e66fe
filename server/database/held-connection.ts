import type pg from 'pg';
import { handOver } from './checkout.js';
import { describedOnce, isRouted, queryPrepared } from './prepared-query.js';

/**
 * One of a pool's connections, kept checked out for a statement that runs one at a time when load is low (a lone
 * redemption, redeem-batch.ts). Through the pool, each statement pays pg-pool's checkout (a turn of the event loop, a
 * timer for DB_POOL_TIMEOUT_MS, listeners) and its release (another timer); at one request at a time that was about
 * 8 µs of a redemption's 500 in the service (docs/hot-path.md). On the held connection a statement goes straight to it.
 *
 * - A statement finds the connection busy (another is running on it) or not there yet: it runs on the pool, as before.
 *   The first one asks the pool for the connection to hold, for the next.
 * - Unused for `idleMs` (or once the pool is ending), it goes back to the pool: a held connection never keeps a pool
 *   from closing for longer than that, and a quiet service holds nothing.
 * - A statement that fails on it, or an error of the connection itself, gives it back as broken (the pool closes it),
 *   as pg-pool does with a connection whose statement failed; the next statement holds a fresh one.
 * - A pool whose statements are routed (Citus, routeStatements) is not held from: the router decides where they run.
 */
export interface HeldConnection {
  query<R extends pg.QueryResultRow>(config: { name: string; text: string; values: unknown[] }): Promise<pg.QueryResult<R>>;
  /** Gives the connection back now; statements after this run on the pool. */
  close(): void;
}

export function holdConnection(pool: pg.Pool, idleMs = 100): HeldConnection {
  let client: pg.PoolClient | null = null;
  let busy = false;
  let connecting = false;
  let closed = false;
  let lastUse = 0;
  let watch: NodeJS.Timeout | null = null;

  const giveBack = (error?: Error) => {
    const held = client;
    if (!held) return;
    client = null;
    busy = false;
    held.removeListener('error', onError);
    if (watch) clearInterval(watch);
    watch = null;
    held.release(error);
  };
  function onError(error: Error) {
    giveBack(error);
  }
  const ending = () => (pool as pg.Pool & { ending?: boolean }).ending === true;

  const connect = () => {
    connecting = true;
    // The callback form: pg-pool calls it as it hands the connection over, in the same turn, so the error listener is
    // on before anything else the connection received in that read is parsed (a FATAL from pg_terminate_backend can
    // follow the message that completed the checkout). With the promise form, it was attached a few microtask turns
    // later, and such an error was an unhandled 'error' event: the process died (the fault suite's termination storm).
    handOver(pool, (error, connected) => {
      connecting = false;
      // No connection to spare (the pool is busy or the database away): statements keep running on the pool.
      if (error || !connected) return;
      if (closed || ending()) return connected.release();
      client = connected;
      connected.on('error', onError);
      lastUse = performance.now();
      watch = setInterval(() => {
        if (!busy && (ending() || performance.now() - lastUse >= idleMs)) giveBack();
      }, idleMs);
      watch.unref();
    });
  };

  return {
    query<R extends pg.QueryResultRow>(config: { name: string; text: string; values: unknown[] }) {
      const held = client;
      if (held === null || busy || ending()) {
        if (held === null && !connecting && !closed && !isRouted(pool) && !ending()) connect();
        return queryPrepared<R>(pool, config);
      }
      busy = true;
      lastUse = performance.now();
      return describedOnce<R>(held, config).then(
        (result) => {
          if (client === held) {
            busy = false;
            if (closed) giveBack();
          }
          return result;
        },
        (error: Error) => {
          if (client === held) giveBack(error);
          throw error;
        },
      );
    },
    close() {
      closed = true;
      // A statement still running on it gives it back when it ends.
      if (!busy) giveBack();
    },
  };
}
