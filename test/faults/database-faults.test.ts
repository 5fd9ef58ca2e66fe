import { rm } from 'node:fs/promises';
import { clusterTempDir } from '../support/temp-dir.js';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApiKey } from '../../server/domain/api-keys.js';
import { TEST_SECRET } from '../support/harness.js';
import { freePort } from '../support/ports.js';
import { startService, waitForHealthy, type ServiceProcess } from '../support/process.js';
import { sleep, startCluster, type Cluster, type StopMode } from './support/cluster.js';
import { gql, issueTokens, startLoad, type LoadResult, type LoadToken } from './support/load.js';

// The real service as a process, on a PostgreSQL of this file's own that the tests stop, kill and restart under load.
let cluster: Cluster;
let service: ServiceProcess;
let base: string;
let admin: pg.Pool;
let dataDir: string;
const apiKey = generateApiKey().key;

beforeAll(async () => {
  cluster = await startCluster();
  const setup = new pg.Client({ connectionString: cluster.url });
  await setup.connect();
  await setup.query('create database rt');
  await setup.end();
  const url = new URL(cluster.url);
  url.pathname = '/rt';
  admin = new pg.Pool({ connectionString: url.toString(), max: 2 });
  admin.on('error', () => {});
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  dataDir = await clusterTempDir('rt-fault-svc-');
  service = startService({
    DATABASE_URL: url.toString(),
    PORT: String(port),
    NODE_ENV: 'production',
    REQUEST_TOKEN_SECRET: TEST_SECRET,
    REQUEST_TOKEN_ADMIN_KEY: apiKey,
    DATA_DIR: dataDir,
    DB_POOL_SIZE: '8',
    DB_POOL_TIMEOUT_MS: '1000',
  });
  await waitForHealthy(`${base}/healthz`, service);
}, 180_000);

afterAll(async () => {
  if (service?.child.exitCode === null) {
    service.child.kill('SIGTERM');
    await service.exited;
  }
  await admin?.end().catch(() => {});
  await cluster?.destroy();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

async function healthz(): Promise<{ status: number; ms: number }> {
  const started = performance.now();
  try {
    const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(10_000) });
    await res.arrayBuffer();
    return { status: res.status, ms: performance.now() - started };
  } catch {
    return { status: 0, ms: performance.now() - started };
  }
}

/** Polls until /healthz says 200 and a fresh token issues and redeems; returns how long that took. */
async function timeToRecover(): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < 30_000) {
    if ((await healthz()).status === 200) {
      try {
        const [token] = await issueTokens(base, apiKey, 1, 1, 'probe');
        const { body } = await gql(base, apiKey, 'mutation($jwt: String!) { redeemRequestToken(input: { jwt: $jwt, scope: "probe" }) { __typename } }', {
          jwt: token.jwt,
        });
        if (body.data?.redeemRequestToken.__typename === 'Redemption') return performance.now() - started;
      } catch {
        // not yet
      }
    }
    await sleep(100);
  }
  return Infinity;
}

/** The promises the service keeps, whatever happened to the database meanwhile. */
async function expectInvariants(tokens: LoadToken[], load: LoadResult, keyed = true) {
  expect(load.unexpected).toEqual([]);
  expect(load.abandoned).toBe(0);
  expect(service.child.exitCode).toBeNull();
  const ids = tokens.map((t) => t.id);
  const { rows: state } = await admin.query(
    `select t.id::text, t.max_uses, t.used_to_date,
       (select count(*)::int from request_token_log l where l.token_id = t.id and l.error_code is null) as successes,
       (select count(*)::int from request_token_idempotency k where k.token_id = t.id) as keys
     from request_token t where t.id = any($1::bigint[])`,
    [ids],
  );
  for (const t of state) {
    expect(t.used_to_date, `token ${t.id} over-spent`).toBeLessThanOrEqual(t.max_uses);
    expect(t.successes, `token ${t.id}: a counted use without its log row or the reverse`).toBe(t.used_to_date);
    expect(t.keys, `token ${t.id}: a use without its idempotency key`).toBe(keyed ? t.used_to_date : 0);
    expect(load.acked.filter((a) => a.tokenId === t.id).length).toBeLessThanOrEqual(t.used_to_date);
  }
  // Every acknowledged redemption is in the log, as a success, and is the one its key points to.
  const { rows: logged } = await admin.query(
    `select l.id::text, l.token_id::text, l.error_code, k.key
     from request_token_log l left join request_token_idempotency k on k.log_id = l.id where l.id = any($1::bigint[])`,
    [load.acked.map((a) => a.id)],
  );
  const byId = new Map(logged.map((r) => [r.id, r]));
  for (const a of load.acked) {
    expect(byId.get(a.id), `acknowledged redemption ${a.id} has no log row`).toMatchObject({
      token_id: a.tokenId,
      error_code: null,
      key: keyed ? a.key : null,
    });
  }
  expect(new Set(load.acked.map((a) => a.id)).size).toBe(load.acked.length);
  if (!keyed) {
    // Without keys, a use may be counted with no answer (the connection died after the commit), at most one per
    // failed attempt; never two for one redemption.
    const used = state.reduce((sum, t) => sum + t.used_to_date, 0);
    expect(used).toBeLessThanOrEqual(load.acked.length + load.transient);
  }
}

describe.each<[StopMode, string]>([
  ['fast', 'restarted (fast shutdown)'],
  ['immediate', 'restarted (immediate shutdown)'],
  ['kill', 'killed with SIGKILL'],
])('PostgreSQL %s while redemptions run', (mode, what) => {
  it(`survives being ${what}: 503 while away, back within 5 s, nothing lost, nothing over-spent`, async () => {
    const tokens = await issueTokens(base, apiKey, 6, 40, `fault-${mode}`);
    const load = startLoad(base, apiKey, tokens);
    await sleep(800);
    await cluster.stop(mode);
    const whileAway: { status: number; ms: number }[] = [];
    const downSince = performance.now();
    while (performance.now() - downSince < 1_500) {
      whileAway.push(await healthz());
      await sleep(100);
    }
    // An API key the process has not cached must be looked up, and cannot be: a retryable 503, not a 401 or a 500.
    const uncached = await gql(base, generateApiKey().key, '{ __typename }', {});
    await cluster.start();
    const recoveredIn = await timeToRecover();
    await sleep(800);
    const result = await load.stop();

    expect(whileAway.length).toBeGreaterThan(3);
    expect(whileAway.every((h) => h.status === 503), JSON.stringify(whileAway)).toBe(true);
    expect(Math.max(...whileAway.map((h) => h.ms))).toBeLessThan(2_500);
    expect(recoveredIn).toBeLessThan(5_000);
    expect(uncached.status).toBe(503);
    expect(uncached.body.errors[0].extensions).toMatchObject({ code: 'SERVICE_UNAVAILABLE', retryable: true });
    expect(result.acked.length).toBeGreaterThan(0);
    expect(result.transient).toBeGreaterThan(0); // the fault was felt
    await expectInvariants(tokens, result);
    console.log(`${mode}: ${result.acked.length} acknowledged, ${result.refused} refused, ${result.transient} retried, ` +
      `healthz while away max ${Math.round(Math.max(...whileAway.map((h) => h.ms)))} ms, recovered in ${Math.round(recoveredIn)} ms`);
  }, 90_000);
});

describe('backend connections terminated repeatedly during load', () => {
  it('keeps every promise while pg_terminate_backend hits every service connection', async () => {
    const tokens = await issueTokens(base, apiKey, 6, 40, 'terminate');
    // And redemptions without a key, which the service batches (server/domain/redeem-batch.ts): a batch whose
    // connection is killed must not be run again, which could count uses twice.
    const plainTokens = await issueTokens(base, apiKey, 6, 1_000, 'terminate-plain');
    const load = startLoad(base, apiKey, tokens);
    const plain = startLoad(base, apiKey, plainTokens, 24, false);
    let terminated = 0;
    const storm = performance.now();
    while (performance.now() - storm < 3_000) {
      const { rows } = await admin.query(
        `select pg_terminate_backend(pid) as ok from pg_stat_activity
         where datname = 'rt' and pid <> pg_backend_pid() and backend_type = 'client backend'`,
      );
      terminated += rows.filter((r) => r.ok).length;
      await sleep(150);
    }
    const recoveredIn = await timeToRecover();
    await sleep(500);
    const result = await load.stop();
    const plainResult = await plain.stop();
    expect(terminated).toBeGreaterThan(10);
    expect(recoveredIn).toBeLessThan(5_000);
    expect(result.acked.length).toBeGreaterThan(0);
    expect(plainResult.acked.length).toBeGreaterThan(0);
    await expectInvariants(tokens, result);
    await expectInvariants(plainTokens, plainResult, false);
    console.log(`terminate: ${terminated} backends terminated, ${result.acked.length} acknowledged, ` +
      `${result.refused} refused, ${result.transient} retried; without keys: ${plainResult.acked.length} acknowledged, ` +
      `${plainResult.transient} transient failures`);
  }, 90_000);
});
