import pg from 'pg';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { holdConnection, type HeldConnection } from '../server/database/held-connection.js';
import { routeStatements } from '../server/database/prepared-query.js';
import { createTestDatabase } from './support/harness.js';

// The connection a lone redemption runs on (server/database/held-connection.ts), on a real PostgreSQL: which backend
// answers each statement (pg_backend_pid) and what the pool counts show.
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

  it('holds nothing from a pool whose statements are routed (Citus)', async () => {
    const { pool, pid } = setUp(10_000);
    routeStatements(pool, () => undefined);
    await pid();
    await sleep(50);
    expect(checkedOut(pool)).toBe(0);
  });
});
