import type pg from 'pg';

/**
 * `pool.connect()`, with an error listener on the connection from the moment pg-pool hands it over until it is
 * released. pg-pool takes its own listener off a connection it hands out, and pg emits an error that arrives while no
 * statement runs (a FATAL from `pg_terminate_backend`, a failover) as an 'error' event: with no listener, Node throws
 * it and the process dies. pg parses a whole read at once, so such an error can follow the message that completed the
 * checkout in the same turn, before a listener added after `await pool.connect()` is on. The listener only keeps
 * the process alive: the connection is then not queryable, its next statement fails, and pg-pool closes it on release.
 */
export function checkout(pool: pg.Pool): Promise<pg.PoolClient> {
  return new Promise((resolve, reject) => {
    handOver(pool, (error, client) => {
      if (error || !client) return reject(error ?? new Error('no connection'));
      // (A stand-in without events, such as a test's recording client, emits no errors either.)
      if (typeof client.on === 'function') {
        const ignore = () => {};
        client.on('error', ignore);
        const release = client.release;
        client.release = (err?: Error | boolean) => {
          client.removeListener('error', ignore);
          release(err);
        };
      }
      resolve(client);
    });
  });
}

/**
 * Calls `taken` with a connection of `pool` as pg-pool hands it over (its callback form), once. A pool-like object
 * whose `connect` answers with a promise only (a wrapper around a pool) is taken from that promise.
 */
export function handOver(pool: pg.Pool, taken: (error: Error | undefined, client?: pg.PoolClient) => void): void {
  let done = false;
  const once = (error: Error | undefined, client?: pg.PoolClient) => {
    if (done) return;
    done = true;
    taken(error, client);
  };
  const answer = (pool.connect as (callback: typeof once) => unknown)(once) as PromiseLike<pg.PoolClient> | undefined;
  if (typeof answer?.then === 'function') answer.then((client) => once(undefined, client), (error: Error) => once(error));
}
