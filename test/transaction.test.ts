import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inTransaction } from '../server/database/transaction.js';
import { createTestDatabase } from './support/harness.js';

// inTransaction (server/database/transaction.ts) on a real PostgreSQL: what is committed, what is rolled back, and
// that the connection goes back to the pool either way.
describe('inTransaction', () => {
  let pool: pg.Pool;
  const rows = async () => (await pool.query<{ n: number }>('select n from t order by n')).rows.map((r) => r.n);

  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: await createTestDatabase({ plain: true }), max: 1, connectionTimeoutMillis: 2000 });
    await pool.query('create table t (n int primary key)');
  });
  afterAll(async () => {
    await pool?.end();
  });

  it('commits what the step did and returns its result', async () => {
    const result = await inTransaction(pool, async (client) => {
      await client.query('insert into t values (1)');
      return 'done';
    });
    expect(result).toBe('done');
    expect(await rows()).toEqual([1]);
  });

  it('rolls back when the step throws, passes the error on and releases the connection', async () => {
    const failure = new Error('step failed');
    await expect(
      inTransaction(pool, async (client) => {
        await client.query('insert into t values (2)');
        throw failure;
      }),
    ).rejects.toBe(failure);
    // The pool has one connection: had it not been released, this would time out waiting for it.
    expect(await rows()).toEqual([1]);
    expect(pool.idleCount).toBe(1);
  });

  it('rolls back a result that `undo` refuses, and returns it all the same', async () => {
    const insert = (n: number) => inTransaction(pool, async (c) => {
      await c.query('insert into t values ($1)', [n]);
      return n;
    }, { undo: (n) => n > 2 });
    expect(await insert(3)).toBe(3);
    expect(await insert(2)).toBe(2);
    expect(await rows()).toEqual([1, 2]);
  });

  it('opens the transaction with `begin` as given', async () => {
    const begin = 'begin read only; set local statement_timeout = 1234';
    const timeout = await inTransaction(pool, async (c) => (await c.query('show statement_timeout')).rows[0].statement_timeout, { begin });
    expect(timeout).toBe('1234ms');
    await expect(inTransaction(pool, (c) => c.query('insert into t values (4)'), { begin })).rejects.toMatchObject({ code: '25006' });
    expect(await rows()).toEqual([1, 2]);
    // `set local` ended with the transaction.
    expect((await pool.query('show statement_timeout')).rows[0].statement_timeout).not.toBe('1234ms');
  });
});
