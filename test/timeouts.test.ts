import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../server/config.js';
import { startTestServer, type TestServer } from './support/harness.js';
import { issue, REDEEM, redeem, tokenState } from './support/operations.js';

let server: TestServer;
let locker: pg.Client;
beforeAll(async () => {
  server = await startTestServer({
    // The per-request path's own pool, both connections of it: no micro-batching of redemptions or issues (either
    // would take one of the two).
    REDEEM_BATCH_MAX: '1',
    ISSUE_BATCH_MAX: '1',
    DB_POOL_SIZE: '2',
    DB_POOL_TIMEOUT_MS: '300',
    DB_LOCK_TIMEOUT_MS: '1000',
    DB_STATEMENT_TIMEOUT_MS: '3000',
  });
  locker = new pg.Client({ connectionString: server.databaseUrl });
  await locker.connect();
});
afterAll(async () => {
  await locker?.end();
  await server?.close();
});

/** Redeems over HTTP and keeps the status, the Retry-After header and the time it took. */
async function timedRedeem(input: Record<string, unknown>) {
  const started = performance.now();
  const res = await fetch(server.graphqlUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${server.apiKey}` },
    body: JSON.stringify({ query: REDEEM, variables: { input } }),
  });
  const body = (await res.json()) as any;
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body, ms: performance.now() - started };
}

const lockRow = async (id: string) => {
  await locker.query('begin');
  await locker.query('select 1 from request_token where id = $1 for update', [id]);
};

describe('database timeouts', () => {
  it('sets statement_timeout and lock_timeout on the hot-path pool and on the ORM connections', async () => {
    const pool = await server.services.pool.query('select current_setting($1) as s, current_setting($2) as l', [
      'statement_timeout',
      'lock_timeout',
    ]);
    expect(pool.rows[0]).toEqual({ s: '3s', l: '1s' });
    const orm = await server.db.orm.em
      .fork()
      .getConnection()
      .execute(`select current_setting('statement_timeout') as s, current_setting('lock_timeout') as l`);
    expect(orm[0]).toEqual({ s: '3s', l: '1s' });
  });

  it('answers a redemption of a row locked elsewhere with a retryable 503 after lock_timeout, consuming nothing', async () => {
    const { jwt, token } = await issue(server, { scope: 'locked', maxUses: 1 });
    await lockRow(token.id);
    try {
      const res = await timedRedeem({ jwt, scope: 'locked' });
      expect(res.status).toBe(503);
      expect(res.retryAfter).toBe('1');
      expect(res.body.errors[0]).toMatchObject({
        message: expect.stringContaining('locked'),
        extensions: { code: 'SERVICE_UNAVAILABLE', reason: 'LOCK_TIMEOUT', retryable: true },
      });
      expect(res.ms).toBeLessThan(2_900); // lock_timeout (1 s) ended it, not statement_timeout (3 s)
    } finally {
      await locker.query('rollback');
    }
    expect(await tokenState(server, token.id)).toEqual({ usedToDate: 0, logs: [] });
    expect((await redeem(server, { jwt, scope: 'locked' })).__typename).toBe('Redemption');
  });

  it('fails requests beyond an exhausted pool fast with a clear error, and recovers when the burst ends', async () => {
    const slow = await issue(server, { scope: 'slow', maxUses: 5 });
    const other = await issue(server, { scope: 'other', maxUses: 10 });
    await lockRow(slow.token.id);
    let excess: Awaited<ReturnType<typeof timedRedeem>>[];
    let holders: Promise<Awaited<ReturnType<typeof timedRedeem>>>[];
    try {
      // Two redemptions wait on the lock and hold both pool connections for lock_timeout (1 s).
      holders = [timedRedeem({ jwt: slow.jwt, scope: 'slow' }), timedRedeem({ jwt: slow.jwt, scope: 'slow' })];
      await new Promise((r) => setTimeout(r, 200));
      excess = await Promise.all(Array.from({ length: 4 }, () => timedRedeem({ jwt: other.jwt, scope: 'other' })));
    } finally {
      await locker.query('rollback');
    }
    for (const res of excess) {
      expect(res.status).toBe(503);
      expect(res.body.errors[0].extensions).toMatchObject({ code: 'SERVICE_UNAVAILABLE', reason: 'POOL_EXHAUSTED', retryable: true });
      expect(res.ms).toBeLessThan(800); // the pool timeout (300 ms), not the slow requests, decided
    }
    // The lock went away before lock_timeout: the slow ones finish normally.
    for (const res of await Promise.all(holders!)) expect(res.body.data.redeemRequestToken.__typename).toBe('Redemption');
    const after = await Promise.all(Array.from({ length: 4 }, () => redeem(server, { jwt: other.jwt, scope: 'other' })));
    expect(after.map((r) => r.__typename)).toEqual(Array(4).fill('Redemption'));
    expect((await tokenState(server, other.token.id)).usedToDate).toBe(4);
  });
});

describe('timeout configuration', () => {
  it.each([
    [{ DB_POOL_TIMEOUT_MS: 'soon' }, 'DB_POOL_TIMEOUT_MS'],
    [{ DB_STATEMENT_TIMEOUT_MS: '5' }, 'DB_STATEMENT_TIMEOUT_MS'],
    [{ DB_LOCK_TIMEOUT_MS: '9000', DB_STATEMENT_TIMEOUT_MS: '5000' }, 'DB_LOCK_TIMEOUT_MS'],
    [{ SHUTDOWN_TIMEOUT_MS: '-1' }, 'SHUTDOWN_TIMEOUT_MS'],
    [{ IDEMPOTENCY_KEY_RETENTION_HOURS: '12' }, 'IDEMPOTENCY_KEY_RETENTION_HOURS'],
  ])('%o is refused naming the variable', (env, variable) => {
    expect(() => loadConfig(env)).toThrow(new RegExp(`^${variable}: `));
  });

  it('has defaults that fail fast', () => {
    expect(loadConfig({})).toMatchObject({
      dbPoolTimeoutMs: 2_000,
      dbStatementTimeoutMs: 5_000,
      dbLockTimeoutMs: 2_000,
      shutdownTimeoutMs: 10_000,
      idempotencyKeyRetentionHours: 168,
    });
  });
});
