import type pg from 'pg';
import { checkout } from './checkout.js';

export interface TransactionOptions<T> {
  /** What opens the transaction: `begin`, or e.g. `begin read only; set local statement_timeout = …` (one message). */
  begin?: string;
  /** Rolled back instead of committed when this says so of the result. */
  undo?: (result: T) => boolean;
}

/**
 * Runs `step` in a transaction of its own on one connection of `pool`: committed when it returns (unless `undo`),
 * rolled back when it throws (the error goes on), the connection released either way.
 */
export async function inTransaction<T>(
  pool: pg.Pool,
  step: (client: pg.PoolClient) => Promise<T>,
  { begin = 'begin', undo }: TransactionOptions<T> = {},
): Promise<T> {
  const client = await checkout(pool);
  try {
    await client.query(begin);
    const result = await step(client);
    await client.query(undo?.(result) ? 'rollback' : 'commit');
    return result;
  } catch (error) {
    await client.query('rollback').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}
