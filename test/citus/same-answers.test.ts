import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createTestDatabase, startTestServer, type TestServer } from '../support/harness.js';
import { issue, redeem, RECORD } from '../support/operations.js';

// Listings, statistics and retention across shards, with two tenants: the same data on one plain PostgreSQL and on
// the Citus cluster (copied row for row, ids included) gives the same answers to the same queries, for each tenant and
// for an admin key. Runs only through `npm run test:citus`.
const citus = inject('citus');

let plain: TestServer;
let distributed: TestServer;
const keys: Record<string, string> = {};

// Parents first: the order rows are copied in (and emptied in reverse).
const TABLES = ['api_client', 'api_key', 'signing_key', 'request_token', 'request_token_log', 'request_token_idempotency'];

async function copyDatabase(from: string, to: string) {
  const source = new pg.Client({ connectionString: from });
  const target = new pg.Client({ connectionString: to });
  await source.connect();
  await target.connect();
  try {
    for (const table of [...TABLES].reverse()) await target.query(`delete from ${table}`);
    for (const table of TABLES) {
      const { rows } = await source.query(`select coalesce(json_agg(t), '[]') as rows from ${table} t`);
      await target.query(`insert into ${table} select * from json_populate_recordset(null::${table}, $1)`, [
        JSON.stringify(rows[0].rows),
      ]);
    }
    // The sequences carry on where the copied ids end.
    const { rows: sequences } = await source.query(
      `select c.relname as name, s.last_value from pg_sequences s join pg_class c on c.relname = s.sequencename
       where s.last_value is not null`,
    );
    for (const s of sequences) await target.query('select setval($1, $2)', [s.name, s.last_value]);
  } finally {
    await source.end();
    await target.end();
  }
}

beforeAll(async () => {
  if (!citus) return;
  plain = await startTestServer({}, {}, { plain: true });
  keys.admin = plain.apiKey;
  // Two tenants, each with a key that may issue, redeem and read.
  for (const tenant of ['alpha', 'beta']) {
    const created = await plain.gql(
      `mutation($n: String!) { createApiClient(input: { name: $n }) { ... on CreateApiClientSuccess { client { id } } } }`,
      { n: tenant },
    );
    const clientId = created.data.createApiClient.client.id;
    const key = await plain.gql(
      `mutation($c: ID!) { createApiKey(input: { name: "k", clientId: $c, permissions: [ISSUE, REDEEM, READ] }) {
        ... on CreateApiKeySuccess { key } } }`,
      { c: clientId },
    );
    keys[tenant] = key.data.createApiKey.key;
  }
  // Tokens of both tenants over several scopes and users; redemptions, refusals, statuses, a released use.
  for (const [t, tenant] of ['alpha', 'beta'].entries()) {
    const as = { ...plain, apiKey: keys[tenant], gql: (q: string, v?: Record<string, unknown>) => plain.gql(q, v, keys[tenant]) };
    for (let i = 0; i < 30; i++) {
      const scope = `scope-${i % 3}`;
      const { jwt } = await issue(as as TestServer, { scope, userId: `user-${i % 5}`, maxUses: 1 + (i % 3) });
      for (let k = 0; k < (i + t) % 4; k++) {
        const r = await redeem(as as TestServer, { jwt, scope: k === 2 ? 'wrong' : scope, clientIp: '203.0.113.9' });
        if (r.__typename === 'Redemption' && i % 4 === 0) {
          await plain.gql(RECORD, { input: { redemptionId: r.id, statusCode: i % 8 === 0 ? 503 : 200, releaseUse: i % 8 === 0 } }, keys[tenant]);
        }
      }
    }
    await redeem(as as TestServer, { jwt: 'garbage', scope: 'scope-0' });
  }
  await plain.services.refusalLog.flush();
  const url = await createTestDatabase();
  await copyDatabase(plain.databaseUrl, url);
  distributed = await startTestServer({}, {}, { databaseUrl: url });
});
afterAll(async () => {
  await plain?.close();
  await distributed?.close();
});

const TOKENS = `query($first: Int, $after: String, $filter: RequestTokenFilter) {
  requestTokens(first: $first, after: $after, filter: $filter) {
    totalCount pageInfo { endCursor hasNextPage }
    edges { cursor node { id scope userId maxUses usedToDate status logs(first: 3) { totalCount edges { node { id errorCode } } } } }
  } }`;
const LOGS = `query($first: Int, $after: String, $filter: RequestTokenLogFilter) {
  requestTokenLogs(first: $first, after: $after, filter: $filter) {
    totalCount pageInfo { endCursor hasNextPage }
    edges { cursor node { id errorCode statusCode clientIp userId releasedAt token { id scope } } }
  } }`;
const STATS = `query($bucket: StatsBucket!, $filter: UsageStatsFilter) { usageStats(bucket: $bucket, filter: $filter) {
  totals { issued redemptions refusals released refusalsByCode { code count } }
  scopes { scope issued redemptions refusals released refusalsByCode { code count } }
  buckets { issued redemptions refusals released }
} }`;

/** The same operation on both, as `who`: the answers must be equal (and not errors). */
async function same(who: string, query: string, variables: Record<string, unknown> = {}) {
  const [a, b] = await Promise.all([plain.gql(query, variables, keys[who]), distributed.gql(query, variables, keys[who])]);
  expect(a.errors, JSON.stringify(a.errors)).toBeUndefined();
  expect(b).toEqual(a);
  return a.data;
}

describe.skipIf(!citus)('the same data on one PostgreSQL and on Citus', () => {
  it('lists tokens, page by page and filtered, alike for each tenant and the admin', async () => {
    for (const who of ['admin', 'alpha', 'beta']) {
      const first = await same(who, TOKENS, { first: 7 });
      expect(first.requestTokens.totalCount).toBeGreaterThan(0);
      await same(who, TOKENS, { first: 7, after: first.requestTokens.pageInfo.endCursor });
      await same(who, TOKENS, { first: 50, filter: { scope: 'scope-1' } });
      await same(who, TOKENS, { first: 50, filter: { userId: 'user-2' } });
      await same(who, TOKENS, { first: 50, filter: { status: 'EXHAUSTED' } });
    }
  });

  it('lists the log, page by page and filtered, alike', async () => {
    for (const who of ['admin', 'alpha', 'beta']) {
      const first = await same(who, LOGS, { first: 9 });
      expect(first.requestTokenLogs.totalCount).toBeGreaterThan(0);
      const second = await same(who, LOGS, { first: 9, after: first.requestTokenLogs.pageInfo.endCursor });
      await same(who, LOGS, { first: 9, after: second.requestTokenLogs.pageInfo.endCursor });
      await same(who, LOGS, { first: 100, filter: { failed: true } });
      await same(who, LOGS, { first: 100, filter: { scope: 'scope-2', failed: false } });
      const token = first.requestTokenLogs.edges.find((e: any) => e.node.token)?.node.token.id;
      await same(who, LOGS, { first: 100, filter: { tokenId: token } });
    }
  });

  it('counts usage statistics alike, per hour and per day', async () => {
    for (const who of ['admin', 'alpha', 'beta']) {
      const hours = await same(who, STATS, { bucket: 'HOUR' });
      expect(hours.usageStats.totals.issued).toBeGreaterThan(0);
      await same(who, STATS, { bucket: 'DAY', filter: { scope: 'scope-0' } });
    }
  });

  it('applies retention alike: the same rows deleted, the same rows left', async () => {
    const truncate = 'mutation { truncateRequestTokenLogs(maxCount: 25) { __typename ... on TruncateRequestTokenLogsSuccess { deletedCount } } }';
    const done = await same('admin', truncate);
    expect(done.truncateRequestTokenLogs.deletedCount).toBeGreaterThan(0);
    await same('admin', LOGS, { first: 100 });
    await same('alpha', LOGS, { first: 100 });
    await same('admin', STATS, { bucket: 'HOUR' });
  });
});
