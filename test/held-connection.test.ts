import pg from 'pg';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { checkout } from '../server/database/checkout.js';
import { holdConnection, type HeldConnection } from '../server/database/held-connection.js';
import { inTransaction } from '../server/database/transaction.js';
import { routeStatements } from '../server/database/prepared-query.js';
import { createTestDatabase } from './support/harness.js';

// The connection a lone redemption runs on (server/database/held-connection.ts), on a real PostgreSQL: which backend
// answers each statement (pg_backend_pid) and what the pool counts show. And `checkout` (server/database/checkout.ts),
// which every other checked-out connection goes through.
let url: string;
const pools: pg.Pool[] = [];
const held: HeldConnection[] = [];

const PID = { name: 'held-probe-pid', text: 'select pg_backend_pid() as pid', values: [] };
const SLOW = { name: 'held-probe-slow', text: 'select pg_backend_pid() as pid, pg_sleep(0.2)', values: [] };
const FAIL = { name: 'held-probe-fail', text: 'select 1 / 0 as nothing', values: [] };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const setUp = (idleMs = 100) => {
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  pools.push(pool);
  const connection = holdConnection(pool, idleMs);
  held.push(connection);
  return { pool, connection, pid: async (statement = PID) => (await connection.query<{ pid: number }>(statement)).rows[0].pid };
};
/** Connections checked out of the pool (the held one, between statements). */
const checkedOut = (pool: pg.Pool) => pool.totalCount - pool.idleCount;
/** Until the first statement's request for a connection has been answered. */
const settle = async (pool: pg.Pool) => {
  for (let i = 0; i < 100 && checkedOut(pool) === 0; i++) await sleep(5);
  // The pool counts it as checked out a little before the holder has it.
  await sleep(5);
};

beforeAll(async () => {
  url = await createTestDatabase({ plain: true });
});
afterEach(async () => {
  for (const connection of held.splice(0)) connection.close();
  await Promise.all(pools.splice(0).map((pool) => pool.end()));
});

describe('holdConnection', () => {
  it('runs the first statement on the pool, then every next one on the connection it holds', async () => {
    const { pool, pid } = setUp(10_000);
    await pid();
    await settle(pool);
    expect(checkedOut(pool)).toBe(1);
    let checkouts = 0;
    pool.on('acquire', () => checkouts++);
    const pids = new Set<number>();
    for (let i = 0; i < 10; i++) pids.add(await pid());
    expect(pids.size).toBe(1);
    // No statement went through the pool's checkout, and the held connection stays checked out between them.
    expect(checkouts).toBe(0);
    expect(checkedOut(pool)).toBe(1);
  });

  it('sends a statement to the pool while the held connection is busy', async () => {
    const { pool, pid } = setUp(10_000);
    await pid();
    await settle(pool);
    const heldPid = await pid();
    const [slow, other] = await Promise.all([pid(SLOW), pid()]);
    expect(slow).toBe(heldPid);
    expect(other).not.toBe(heldPid);
  });

  it('gives the connection back when unused, and holds one again when statements come back', async () => {
    const { pool, pid } = setUp(50);
    await pid();
    await settle(pool);
    expect(checkedOut(pool)).toBe(1);
    await sleep(200);
    expect(checkedOut(pool)).toBe(0);
    await pid();
    await settle(pool);
    expect(checkedOut(pool)).toBe(1);
  });

  it('gives a connection whose statement failed back as broken, and holds a fresh one', async () => {
    const { pool, pid } = setUp(10_000);
    await pid();
    await settle(pool);
    const before = await pid();
    await expect(pid(FAIL)).rejects.toThrow(/division by zero/);
    // The broken one was closed by the pool, not put back.
    expect(pool.totalCount).toBe(pool.idleCount);
    await pid();
    await settle(pool);
    const after = await pid();
    expect(after).not.toBe(before);
  });

  it('lets the pool end, closed or not', async () => {
    const closedOne = setUp(10_000);
    await closedOne.pid();
    await settle(closedOne.pool);
    closedOne.connection.close();
    expect(checkedOut(closedOne.pool)).toBe(0);
    await closedOne.pool.end();

    // Not closed: given back once the pool is ending, within its idle period.
    const open = setUp(50);
    await open.pid();
    await settle(open.pool);
    const started = Date.now();
    await open.pool.end();
    expect(Date.now() - started).toBeLessThan(2_000);
    pools.splice(0);
  });

  it('listens for the connection errors from the moment it is handed over', async () => {
    // pg parses a whole read at once: a FATAL (pg_terminate_backend) right behind the message that completed the
    // checkout is emitted in the same turn. Here the holder's checkout (the first one: it asks before its statement
    // goes to the pool) gets such an error right after the hand-over, before any microtask runs.
    const { pool, pid } = setUp(10_000);
    const original = pool.connect.bind(pool) as (cb: (e: Error | undefined, c?: pg.PoolClient) => void) => void;
    const fatal = (c: pg.PoolClient) => c.emit('error', new Error('terminating connection due to administrator command'));
    (pool as unknown as { connect: unknown }).connect = (callback?: (e: Error | undefined, c?: pg.PoolClient) => void) => {
      (pool as unknown as { connect: unknown }).connect = original;
      if (callback) {
        return original((e, c) => {
          callback(e, c);
          if (c) fatal(c);
        });
      }
      return new Promise((resolve, reject) =>
        original((e, c) => {
          if (e || !c) return reject(e);
          resolve(c);
          fatal(c);
        }),
      );
    };
    const before = pool.totalCount;
    await pid();
    await sleep(20);
    // Given back broken (the pool closed it), and statements still answer, on a connection held again.
    expect(checkedOut(pool)).toBe(0);
    expect(pool.totalCount).toBeLessThanOrEqual(before + 1);
    expect(await pid()).toBeGreaterThan(0);
    await settle(pool);
    expect(checkedOut(pool)).toBe(1);
  });

  it('holds nothing from a pool whose statements are routed (Citus)', async () => {
    const { pool, pid } = setUp(10_000);
    routeStatements(pool, () => undefined);
    await pid();
    await sleep(50);
    expect(checkedOut(pool)).toBe(0);
  });
});

describe('checkout', () => {
  it('keeps an error that comes with the hand-over from killing the process, and the broken connection is closed', async () => {
    const pool = new pg.Pool({ connectionString: url, max: 2 });
    pools.push(pool);
    const original = pool.connect.bind(pool) as (cb: (e: Error | undefined, c?: pg.PoolClient) => void) => void;
    (pool as unknown as { connect: unknown }).connect = (callback: (e: Error | undefined, c?: pg.PoolClient) => void) => {
      (pool as unknown as { connect: unknown }).connect = original;
      original((e, c) => {
        callback(e, c);
        // As pg emits a FATAL that arrives while no statement runs (it also marks the connection not queryable).
        if (c) {
          (c as unknown as { _queryable: boolean })._queryable = false;
          c.emit('error', new Error('terminating connection due to administrator command'));
        }
      });
    };
    // The transaction's first statement fails on the broken connection, which goes back and is closed.
    await expect(inTransaction(pool, async (client) => (await client.query('select 1 as one')).rows[0])).rejects.toThrow();
    expect(pool.totalCount).toBe(0);
    // The next checkout is a fresh connection, and works.
    expect(await inTransaction(pool, async (client) => (await client.query('select 1 as one')).rows[0])).toEqual({ one: 1 });
    const client = await checkout(pool);
    expect(client.listenerCount('error')).toBe(1);
    client.release();
    // Released: the pool's own listener only.
    expect(client.listenerCount('error')).toBe(1);
  });
});
