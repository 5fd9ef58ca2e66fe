import { SignJWT } from 'jose';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApiKey } from '../server/domain/api-keys.js';
import { createRefusalLog } from '../server/domain/refusal-log.js';
import { createTestDatabase, startTestServer, TEST_SECRET, type TestServer } from './support/harness.js';
import { REDEEM } from './support/operations.js';
import { freePort } from './support/ports.js';
import { startService, waitForHealthy } from './support/process.js';

const forged = () =>
  new SignJWT({ jti: '1', sub: 's', mod: 'n', max: 1 })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt()
    .sign(new TextEncoder().encode('not-the-secret-not-the-secret-not-the-secret'));

describe('refusals that cannot be tied to a token', () => {
  let server: TestServer;
  beforeAll(async () => {
    // A flush interval far beyond the test, so that only explicit flushes write.
    server = await startTestServer({ REFUSAL_LOG_FLUSH_MS: '600000' });
  });
  afterAll(() => server?.close());

  it('make no database query on the request path, and are written by one statement when flushed', async () => {
    const jwt = await forged();
    // Warm the API key cache: the first request of a key reads it.
    await server.gql(REDEEM, { input: { jwt, scope: 's' } });
    await server.services.refusalLog.flush();

    // Every connection checkout, on the hot-path pool and on the ORM's pool.
    let queries = 0;
    server.services.pool.on('acquire', () => queries++);
    const ormPool = (server.services.orm.em.getConnection().getKnex().client as any).pool;
    ormPool.on('acquireSuccess', () => queries++);
    const before = Number((await server.sql('select count(*) from request_token_log'))[0].count);
    const lastId = (await server.sql('select coalesce(max(id), 0)::text as id from request_token_log'))[0].id;
    queries = 0;

    const inputs: Record<string, string>[] = [
      ...Array.from({ length: 40 }, (_, i) => ({ jwt, scope: 's', clientIp: '198.51.100.7', userAgent: i % 2 ? `agent ${i} "q" \\N \\ end \t é ✓ \u2028` : `agent ${i}\ta tab, no backslash` })),
      ...Array.from({ length: 10 }, () => ({ jwt: 'garbage', scope: 's', userId: 'u9' })),
    ];
    const results = await Promise.all(inputs.map((input) => server.gql(REDEEM, { input })));
    const refusals = results.map((r) => r.data.redeemRequestToken);
    expect(refusals.filter((r) => r.code === 'TOKEN_SIGNATURE_INVALID')).toHaveLength(40);
    expect(refusals.filter((r) => r.code === 'TOKEN_MALFORMED')).toHaveLength(10);
    expect(queries).toBe(0);

    // Ids are given when the rows are written, so pages of the log stay newest first by id.
    expect(refusals.every((r) => r.logId === null)).toBe(true);
    queries = 0;
    await server.services.refusalLog.flush();
    expect(queries).toBe(1);

    const rows = await server.sql('select * from request_token_log where id > $1 order by id', [lastId]);
    expect(rows).toHaveLength(50);
    expect(Number((await server.sql('select count(*) from request_token_log'))[0].count)).toBe(before + 50);
    const bad = rows.filter((r) => r.error_code === 'TOKEN_SIGNATURE_INVALID');
    expect(bad.map((r) => r.user_agent).sort()).toEqual(inputs.slice(0, 40).map((i) => i.userAgent).sort());
    // A refusal no token owns carries token id 0 (the log's token_id is never null).
    expect(bad.every((r) => r.token_id === '0' && r.client_ip !== null)).toBe(true);
    const malformed = rows.filter((r) => r.error_code === 'TOKEN_MALFORMED');
    expect(malformed).toHaveLength(10);
    expect(malformed.every((r) => r.user_id === 'u9' && r.token_id === '0')).toBe(true);
    expect(rows.every((r) => Date.now() - r.timestamp.getTime() < 60_000)).toBe(true);
  });
});

describe('a graceful shutdown', () => {
  const client = { db: '' };
  let service: ReturnType<typeof startService> | null = null;
  afterAll(() => {
    if (service && service.child.exitCode === null) service.child.kill('SIGKILL');
  });

  it('writes the refusals still queued before the process exits', async () => {
    client.db = await createTestDatabase();
    const port = await freePort();
    const adminKey = generateApiKey().key;
    service = startService({
      DATABASE_URL: client.db,
      PORT: String(port),
      REQUEST_TOKEN_SECRET: TEST_SECRET,
      REQUEST_TOKEN_ADMIN_KEY: adminKey,
      REFUSAL_LOG_FLUSH_MS: '600000',
      LOG_LEVEL: 'error',
    });
    const base = `http://127.0.0.1:${port}`;
    await waitForHealthy(`${base}/healthz`, service);
    const jwt = await forged();
    const codes = await Promise.all(
      Array.from({ length: 25 }, async () => {
        const res = await fetch(`${base}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${adminKey}` },
          body: JSON.stringify({ query: REDEEM, variables: { input: { jwt, scope: 's' } } }),
        });
        return ((await res.json()) as any).data.redeemRequestToken.code as string;
      }),
    );
    const db = new pg.Client({ connectionString: client.db });
    await db.connect();
    try {
      const queued = await db.query('select count(*)::int as n from request_token_log');
      expect(queued.rows[0].n).toBe(0);
      service.child.kill('SIGTERM');
      expect(await service.exited).toBe(0);
      const { rows } = await db.query('select id::text, error_code from request_token_log order by id');
      expect(codes.every((c) => c === 'TOKEN_SIGNATURE_INVALID')).toBe(true);
      expect(rows).toHaveLength(25);
      expect(rows.every((r) => r.error_code === 'TOKEN_SIGNATURE_INVALID')).toBe(true);
    } finally {
      await db.end();
    }
  });
});

describe('a flood of such refusals', () => {
  let server: TestServer;
  beforeAll(async () => {
    // No timer within the test: only the row count starts a write.
    server = await startTestServer({ REFUSAL_LOG_FLUSH_MS: '600000', REFUSAL_LOG_FLUSH_ROWS: '20' });
  });
  afterAll(() => server?.close());

  it('is written as soon as REFUSAL_LOG_FLUSH_ROWS rows wait, without the timer', async () => {
    const jwt = await forged();
    await Promise.all(Array.from({ length: 25 }, () => server.gql(REDEEM, { input: { jwt, scope: 's', userId: 'flood' } })));
    let written = 0;
    for (let i = 0; i < 100 && written < 20; i++) {
      await new Promise((r) => setTimeout(r, 50));
      written = (await server.sql(`select count(*)::int as n from request_token_log where user_id = 'flood'`))[0].n;
    }
    expect(written).toBeGreaterThanOrEqual(20);
    await server.services.refusalLog.flush();
    expect((await server.sql(`select count(*)::int as n from request_token_log where user_id = 'flood'`))[0].n).toBe(25);
  });

  it('while the database cannot be reached, waits for the timer instead of trying again on every new row', async () => {
    // A real pool to a port where nothing listens: every write fails.
    const pool = new pg.Pool({ connectionString: `postgres://x:y@127.0.0.1:${await freePort()}/none`, connectionTimeoutMillis: 1000 });
    let attempts = 0;
    const errors: string[] = [];
    const original = pool.connect.bind(pool);
    pool.connect = (() => {
      attempts++;
      return original();
    }) as typeof pool.connect;
    const log = createRefusalLog(pool, { flushMs: 600_000, flushRows: 5, onError: (message) => errors.push(message) });
    const refusal = { code: 'TOKEN_MALFORMED', userId: null, clientIp: null, userAgent: null, clientId: null } as const;
    for (let i = 0; i < 5; i++) log.record(refusal);
    await new Promise((r) => setTimeout(r, 300));
    expect(attempts).toBe(1);
    for (let i = 0; i < 50; i++) log.record(refusal);
    await new Promise((r) => setTimeout(r, 300));
    expect(attempts).toBe(1);
    expect(errors.some((m) => m.includes('could not write 5 refusal log rows'))).toBe(true);
    await pool.end();
  });
});
