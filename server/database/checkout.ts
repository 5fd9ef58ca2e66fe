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
    pool.connect((error, client) => {
      if (error || !client) return reject(error ?? new Error('no connection'));
      const ignore = () => {};
      client.on('error', ignore);
      const release = client.release;
      client.release = (err?: Error | boolean) => {
        client.removeListener('error', ignore);
        release(err);
      };
      resolve(client);
    });
  });
}
