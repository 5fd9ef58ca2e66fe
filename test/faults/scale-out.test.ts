import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApiKey } from '../../server/domain/api-keys.js';
import { createTestDatabase, TEST_SECRET } from '../support/harness.js';
import { freePort } from '../support/ports.js';
import { startService, waitForHealthy, type ServiceProcess } from '../support/process.js';
import { gql } from './support/load.js';

// Three service processes on one database. Their clocks are deliberately wrong (-2 min, right, +2 min): time decisions
// are the database's, so they must still agree.
const SKEWS = [-120_000, 0, 120_000];
const skewClock = fileURLToPath(new URL('./support/skew-clock.mjs', import.meta.url));
const apiKey = generateApiKey().key;
let databaseUrl: string;
let db: pg.Pool;
const bases: string[] = [];
const services: ServiceProcess[] = [];

beforeAll(async () => {
  databaseUrl = await createTestDatabase();
  db = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  const env = (port: number, skew: number) => ({
    DATABASE_URL: databaseUrl,
    DATA_DIR: join(tmpdir(), 'rt-unused'),
    PORT: String(port),
    NODE_ENV: 'production',
    REQUEST_TOKEN_SECRET: TEST_SECRET,
    REQUEST_TOKEN_ADMIN_KEY: apiKey,
    DB_POOL_SIZE: '10',
    // 1,000 requests at once on two shared cores: generous limits, so that only the outcome is judged here.
    DB_POOL_TIMEOUT_MS: '50000',
    DB_LOCK_TIMEOUT_MS: '50000',
    DB_STATEMENT_TIMEOUT_MS: '55000',
    // Every request comes from 127.0.0.1: the per-address connection cap (256) would refuse most of the 1,000.
    MAX_CONNECTIONS_PER_CLIENT: '0',
    CLOCK_SKEW_MS: String(skew),
    NODE_OPTIONS: `--import ${skewClock}`,
  });
  // One at a time: they share the database, and the first one migrates it.
  for (const skew of SKEWS) {
    const port = await freePort();
    const service = startService(env(port, skew));
    services.push(service);
    await waitForHealthy(`http://127.0.0.1:${port}/healthz`, service);
    bases.push(`http://127.0.0.1:${port}`);
  }
}, 180_000);

afterAll(async () => {
  for (const s of services) if (s.child.exitCode === null) s.child.kill('SIGTERM');
  await Promise.all(services.map((s) => s.exited));
  await db?.end();
});

const ISSUE = `mutation($input: CreateRequestTokenInput!) { createRequestToken(input: $input) {
  __typename ... on CreateRequestTokenSuccess { jwt token { id } } ... on ValidationError { issues { path } } } }`;
const REDEEM = `mutation($input: RedeemRequestTokenInput!) { redeemRequestToken(input: $input) {
  __typename ... on Redemption { id } ... on TokenRejectedError { code } } }`;
const INSPECT = `query($input: InspectRequestTokenInput!) { inspectRequestToken(input: $input) {
  ... on Inspection { redeemable rejectionCode status } } }`;

const issue = async (base: string, input: Record<string, unknown>) =>
  (await gql(base, apiKey, ISSUE, { input })).body.data.createRequestToken;

describe('three server processes on one database', () => {
  it('lets exactly 5 of 1,000 concurrent redemptions of a maxUses=5 token succeed, with exactly 5 success log rows', {
    timeout: 180_000,
  }, async () => {
    const { jwt, token } = await issue(bases[0], { scope: 'scale', maxUses: 5 });
    const started = performance.now();
    const answers = await Promise.all(
      Array.from({ length: 1_000 }, (_, i) =>
        gql(bases[i % 3], apiKey, REDEEM, { input: { jwt, scope: 'scale' } }, 90_000).then(
          (a) => a.body.data?.redeemRequestToken ?? { code: `HTTP ${a.status}: ${JSON.stringify(a.body.errors)}` },
        ),
      ),
    );
    const ms = performance.now() - started;
    const outcomes = answers.map((a) => (a.__typename === 'Redemption' ? 'ok' : a.code));
    expect(outcomes.filter((o) => o !== 'ok' && o !== 'MAX_USES_EXCEEDED')).toEqual([]);
    expect(outcomes.filter((o) => o === 'ok')).toHaveLength(5);
    expect(outcomes.filter((o) => o === 'MAX_USES_EXCEEDED')).toHaveLength(995);
    const { rows } = await db.query(
      `select count(*) filter (where error_code is null)::int as ok, count(*)::int as all,
         (select used_to_date from request_token where id = $1) as used
       from request_token_log where token_id = $1`,
      [token.id],
    );
    expect(rows[0]).toEqual({ ok: 5, all: 1_000, used: 5 });
    console.log(`scale-out: 1,000 concurrent redemptions over 3 processes in ${Math.round(ms)} ms ` +
      `(${Math.round(1_000_000 / ms)} req/s), 5 succeeded, 995 MAX_USES_EXCEEDED`);
  });

  it('really runs the processes with skewed clocks', () => {
    // The logger stamps lines with the process clock: the +2 min process writes the future.
    const stamp = (s: ServiceProcess) => Date.parse(/^(\S+) info/m.exec(s.output())![1]);
    expect(stamp(services[2]) - stamp(services[0])).toBeGreaterThan(200_000);
  });

  it('agrees across skewed clocks on issuing: expiry in the future is judged by the database clock', async () => {
    const soon = new Date(Date.now() + 60_000).toISOString();
    const justPast = new Date(Date.now() - 60_000).toISOString();
    for (const base of bases) {
      expect((await issue(base, { scope: 'clock', expiresAt: soon })).__typename).toBe('CreateRequestTokenSuccess');
      expect(await issue(base, { scope: 'clock', expiresAt: justPast })).toEqual({
        __typename: 'ValidationError',
        issues: [{ path: ['input', 'expiresAt'] }],
      });
    }
  });

  it('agrees across skewed clocks on expiry and not-before when redeeming and inspecting', async () => {
    const expiring = await issue(bases[0], { scope: 'clock', maxUses: 3, expiresAt: new Date(Date.now() + 60_000).toISOString() });
    const later = await issue(bases[2], { scope: 'clock', maxUses: 3, notBefore: new Date(Date.now() + 60_000).toISOString() });
    for (const base of bases) {
      const inspected = (await gql(base, apiKey, INSPECT, { input: { jwt: later.jwt, scope: 'clock' } })).body.data;
      expect(inspected.inspectRequestToken).toEqual({ redeemable: false, rejectionCode: 'TOKEN_NOT_YET_VALID', status: 'NOT_YET_VALID' });
      const refused = (await gql(base, apiKey, REDEEM, { input: { jwt: later.jwt, scope: 'clock' } })).body.data;
      expect(refused.redeemRequestToken).toEqual({ __typename: 'TokenRejectedError', code: 'TOKEN_NOT_YET_VALID' });
      const redeemed = (await gql(base, apiKey, REDEEM, { input: { jwt: expiring.jwt, scope: 'clock' } })).body.data;
      expect(redeemed.redeemRequestToken.__typename).toBe('Redemption');
    }
  });
});
