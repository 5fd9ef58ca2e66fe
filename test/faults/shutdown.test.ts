import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { generateApiKey } from '../../server/domain/api-keys.js';
import { createTestDatabase, TEST_SECRET } from '../support/harness.js';
import { freePort } from '../support/ports.js';
import { clusterTempDir } from '../support/temp-dir.js';
import { embeddedDatabaseUrl } from '../../server/database/embedded-db.js';
import { startService, waitForHealthy, type ServiceProcess } from '../support/process.js';
import { portOpen, sleep } from './support/cluster.js';
import { gql, issueTokens } from './support/load.js';

const REDEEM = `mutation($jwt: String!) { redeemRequestToken(input: { jwt: $jwt, scope: "drain" }) {
  __typename ... on Redemption { id } ... on Error { code } } }`;

const running: ServiceProcess[] = [];
const dirs: string[] = [];
afterAll(async () => {
  for (const s of running) if (s.child.exitCode === null) s.child.kill('SIGKILL');
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function ready(base: string): Promise<boolean> {
  try {
    return (await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(2_000) })).status === 200;
  } catch {
    return false;
  }
}

describe('graceful shutdown on SIGTERM', () => {
  it('fails readiness at once, completes in-flight requests, closes the pool and the embedded PostgreSQL, exits 0', async () => {
    const dataDir = await clusterTempDir('rt-drain-');
    dirs.push(dataDir);
    const port = await freePort();
    const pgPort = await freePort();
    const apiKey = generateApiKey().key;
    const base = `http://127.0.0.1:${port}`;
    const service = startService({
      DATA_DIR: dataDir,
      PORT: String(port),
      EMBEDDED_PG_PORT: String(pgPort),
      REQUEST_TOKEN_SECRET: TEST_SECRET,
      REQUEST_TOKEN_ADMIN_KEY: apiKey,
      SHUTDOWN_TIMEOUT_MS: '8000',
      DB_LOCK_TIMEOUT_MS: '6000',
      DB_STATEMENT_TIMEOUT_MS: '7000',
    });
    running.push(service);
    await waitForHealthy(`${base}/healthz`, service);
    const [token] = await issueTokens(base, apiKey, 1, 3, 'drain');

    // Hold the token's row so that three redemptions are in flight, waiting on it, when SIGTERM arrives.
    const locker = new pg.Client({ connectionString: await embeddedDatabaseUrl(join(dataDir, 'pg'), pgPort) });
    await locker.connect();
    await locker.query('begin');
    await locker.query('select 1 from request_token where id = $1 for update', [token.id]);
    const inFlight = Array.from({ length: 3 }, () => gql(base, apiKey, REDEEM, { jwt: token.jwt }));
    await sleep(300);

    const signalled = performance.now();
    service.child.kill('SIGTERM');
    await sleep(50);
    expect(await ready(base)).toBe(false); // readiness fails at once: 503 or no longer accepting
    await sleep(500);
    expect(service.child.exitCode).toBeNull(); // still draining
    await locker.query('rollback');
    await locker.end();

    const answers = await Promise.all(inFlight);
    expect(answers.map((a) => [a.status, a.body.data.redeemRequestToken.__typename])).toEqual(
      Array(3).fill([200, 'Redemption']),
    );
    expect(await service.exited).toBe(0);
    expect(performance.now() - signalled).toBeLessThan(8_000);
    expect(service.output()).toContain('stopped');
    expect(await portOpen(port)).toBe(false);
    expect(await portOpen(pgPort)).toBe(false);
  }, 120_000);

  it('exits within SHUTDOWN_TIMEOUT_MS even when a request never finishes', async () => {
    const databaseUrl = await createTestDatabase();
    const port = await freePort();
    const apiKey = generateApiKey().key;
    const base = `http://127.0.0.1:${port}`;
    const service = startService({
      DATABASE_URL: databaseUrl,
      DATA_DIR: join(tmpdir(), 'rt-unused'),
      PORT: String(port),
      REQUEST_TOKEN_SECRET: TEST_SECRET,
      REQUEST_TOKEN_ADMIN_KEY: apiKey,
      SHUTDOWN_TIMEOUT_MS: '2000',
      DB_LOCK_TIMEOUT_MS: '30000',
      DB_STATEMENT_TIMEOUT_MS: '60000',
    });
    running.push(service);
    await waitForHealthy(`${base}/healthz`, service);
    const [token] = await issueTokens(base, apiKey, 1, 1, 'drain');
    const locker = new pg.Client({ connectionString: databaseUrl });
    await locker.connect();
    try {
      await locker.query('begin');
      await locker.query('select 1 from request_token where id = $1 for update', [token.id]);
      const stuck = gql(base, apiKey, REDEEM, { jwt: token.jwt }).catch((error) => error);
      await sleep(300);
      const signalled = performance.now();
      service.child.kill('SIGTERM');
      const code = await service.exited;
      const took = performance.now() - signalled;
      expect(took).toBeLessThan(2_000 + 2_000); // the deadline, plus slack for a loaded machine
      expect(code).toBe(1);
      expect(service.output()).toContain('shutdown took longer than 2000 ms');
      expect(await stuck).toBeInstanceOf(Error); // the stuck request's connection was closed, not left hanging
    } finally {
      await locker.query('rollback').catch(() => {});
      await locker.end();
    }
  }, 60_000);
});
