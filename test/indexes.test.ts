import { logIsDistributed } from '../server/database/citus.js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { revokeTokensStatement } from '../server/domain/bulk-revoke.js';
import { truncateLogs } from '../server/domain/log-retention.js';
import { usageStats, usageStatsQuery } from '../server/domain/usage-stats.js';
import { listTokens } from '../server/domain/tokens.js';
import { listLogs } from '../server/domain/logs.js';
import { encodeCursor } from '../server/domain/paging.js';
import { forgetUser } from '../server/domain/forget-user.js';
import { monthOfPartition } from '../server/domain/log-partitions.js';
import { startTestServer, type TestServer } from './support/harness.js';

let server: TestServer;

// 20,000 tokens in 40 scopes and 300,000 log rows, spread evenly over the last 100 days: enough rows that the planner
// only picks an index when it pays.
const DAY_MS = 86_400_000;
const BASE = new Date(Math.floor(Date.now() / DAY_MS) * DAY_MS - 100 * DAY_MS);
const at = (days: number) => new Date(BASE.getTime() + days * DAY_MS);

beforeAll(async () => {
  // Seeding 300,000 rows takes longer than a request may (DB_STATEMENT_TIMEOUT_MS), above all on a busy machine.
  server = await startTestServer({ DB_STATEMENT_TIMEOUT_MS: '120000' });
  await server.sql(
    `insert into request_token (client_id, scope, user_id, max_uses, issued_at)
     select 1, 'scope-' || (i % 40), 'user-' || (i % 5000), 3, $1::timestamptz + (i * interval '432 seconds')
     from generate_series(0, 19999) i`,
    [BASE],
  );
  await server.sql(
    `insert into request_token_log (token_id, error_code, status_code, user_id, timestamp)
     select (select min(id) from request_token) + (i % 20000),
       case when i % 7 = 0 then 'TOKEN_EXPIRED' end, 200 + (i % 4) * 100, 'reader-' || (i % 500),
       $1::timestamptz + (i * interval '28.8 seconds')
     from generate_series(0, 299999) i`,
    [BASE],
  );
  await server.sql('analyze request_token');
  await server.sql('analyze request_token_log');
  // The log is partitioned by month: a plan names each partition's own index, which is an index of the parent's.
  for (const { child, parent } of await server.sql(
    `select c.relname as child, p.relname as parent from pg_inherits i join pg_class c on c.oid = i.inhrelid
     join pg_class p on p.oid = i.inhparent where c.relkind = 'i'`,
  )) {
    partitionIndexes.set(child, parent);
  }
}, 120_000);
const partitionIndexes = new Map<string, string>();
afterAll(() => server?.close());

/**
 * Runs `work` with a pool that EXPLAINs each statement it sends just before running it (inside a transaction rolled
 * back at the end, so the work sees real answers and each plan sees the rows as the statement does). DDL (retention
 * detaching and dropping whole months) has no plan: it is recorded as its text.
 */
async function plansOf(work: (pool: pg.Pool) => Promise<unknown>, client?: pg.PoolClient): Promise<string[]> {
  const own = client ? null : await server.db.pool.connect();
  const runner = (client ?? own)!;
  const plans: string[] = [];
  const recorder = {
    async query(text: string | { text: string; values?: unknown[] }, values?: unknown[]) {
      const statement = typeof text === 'string' ? { text, values: values ?? [] } : { text: text.text, values: text.values ?? [] };
      // The work's own transaction control stays out: everything runs inside the transaction rolled back below.
      if (/^\s*(begin|commit|rollback|set local)\b/i.test(statement.text)) return { rows: [] };
      if (/^\s*(alter|drop|create)\b/i.test(statement.text)) plans.push(statement.text);
      else {
        const { rows } = await runner.query(`explain (format json) ${statement.text}`, statement.values);
        plans.push(JSON.stringify(rows[0]['QUERY PLAN']));
      }
      return runner.query(statement.text, statement.values);
    },
    async connect() {
      return { query: recorder.query, release() {} };
    },
  } as unknown as pg.Pool;
  if (own) await own.query('begin');
  try {
    await work(recorder);
    return plans;
  } finally {
    if (own) {
      await own.query('rollback');
      own.release();
    }
  }
}

/** The indexes a plan reads, a partition's index named by the partitioned index it belongs to. */
const indexesIn = (plan: string) =>
  [...new Set([...plan.matchAll(/"Index Name":"([^"]+)"/g)].map((m) => partitionIndexes.get(m[1]) ?? m[1]))].sort();
const DAY = { since: at(40), until: at(41) };

// A scope's tokens are read by one of the two indexes that lead with the scope. At this size (500 tokens a scope) the
// planner weighs a scope's tokens by (scope, client_id, id) about as a time range of them by (scope, issued_at): it
// may take either (PostgreSQL 18 takes the first). On bench:scale's million tokens it reads usage statistics' time
// ranges by (scope, issued_at) (docs/scaling.md); the token count below shows that index at work here.
const SCOPE_INDEXES = ['request_token_scope_client_id_id_index', 'request_token_scope_issued_at_index'];

describe('indexes behind the dashboard operations (EXPLAIN on 300,000 log rows)', () => {
  it('usage statistics over one day read the log by its timestamp index and tokens by issue time', async () => {
    const [plan] = await plansOf((pool) => usageStats({ pool, tenant: null }, DAY, 'HOUR', undefined, usageStatsQuery));
    expect(indexesIn(plan)).toEqual(expect.arrayContaining(['request_token_issued_at_index', 'request_token_log_timestamp_index']));
    expect(plan).not.toMatch(/"Node Type":"Seq Scan","Parallel Aware":(true|false),"Async Capable":(true|false),"Relation Name":"request_token_log"/);
  });

  it('usage statistics over a month hash a few buckets instead of sorting every log row of the window', async () => {
    const [plan] = await plansOf((pool) => usageStats({ pool, tenant: null }, { since: at(40), until: at(70) }, 'DAY', undefined, usageStatsQuery));
    expect(plan).toContain('"Strategy":"Hashed"');
    // No sort over the log's rows (the planner may sort the few hourly rollup rows at the window's edges).
    const sorts: unknown[] = [];
    const walk = (node: { 'Node Type': string; Plans?: unknown[] }) => {
      if (node['Node Type'] === 'Sort') sorts.push(node);
      for (const child of node.Plans ?? []) walk(child as typeof node);
    };
    walk(JSON.parse(plan)[0].Plan);
    for (const sort of sorts) expect(JSON.stringify(sort)).not.toMatch(/request_token_log|"CTE Name":"tail"/);
  });


  it('usage statistics of one scope read its tokens through an index of the scope', async () => {
    const month = { since: at(30), until: at(60), scope: 'scope-7' };
    const [plan] = await plansOf((pool) => usageStats({ pool, tenant: null }, month, 'DAY', undefined, usageStatsQuery));
    expect(indexesIn(plan).filter((index) => SCOPE_INDEXES.includes(index))).toHaveLength(1);
  });

  // Bulk revocation runs through MikroORM: its one UPDATE is taken from the service and EXPLAINed (not run).
  // A scope's tokens issued before a recent time (most of its history): by issue time alone that is most of the table.
  // (With the cut-off a quarter of the way in, reading a quarter of the tokens in issue order, which is their order on
  // disk, costs about as much as the scope's 120 rows, and the planner's choice between the two turns on the table's
  // fill: it flipped with request_token's fillfactor 90.)
  const bulkRevocation = () =>
    revokeTokensStatement({ orm: server.db.orm, tenant: null }, { scope: 'scope-3', issuedBefore: at(90) }).getFormattedQuery();
  const planOf = async (sql: string, runner: pg.Pool | pg.PoolClient = server.db.pool) =>
    JSON.stringify((await runner.query(`explain (format json) ${sql}`)).rows[0]['QUERY PLAN']);

  it('bulk revocation by scope and issue time reads the scope through its index', async () => {
    const indexes = indexesIn(await planOf(bulkRevocation()));
    expect(indexes).toHaveLength(1);
    expect(SCOPE_INDEXES).toContain(indexes[0]);
  });

  it('the index assertions can fail: without the scope indexes the same statement plans differently', async () => {
    const client = await server.db.pool.connect();
    try {
      await client.query('begin');
      for (const index of SCOPE_INDEXES) await client.query(`drop index ${index}`);
      const indexes = indexesIn(await planOf(bulkRevocation(), client));
      for (const index of SCOPE_INDEXES) expect(indexes).not.toContain(index);
    } finally {
      await client.query('rollback');
      client.release();
    }
  });

  it('retention finds the cut-off by reading the id index backwards and walks each cut-off\'s batches along its index', async () => {
    const plans = await plansOf((pool) => truncateLogs(pool, { maxCount: 290_000, maxDays: 97 }));
    const [cutoff] = plans;
    // Deleted inside a month (the months before the data are dropped whole, as DDL): the time limit's batches, then
    // the count limit's.
    const batches = plans.filter((plan) => plan.includes('"Operation":"Delete"'));
    const firstBatch = batches[0];
    expect(plans.some((plan) => /^alter table request_token_log detach partition "request_token_log_y\d{4}m\d{2}"$/.test(plan))).toBe(true);
    expect(cutoff).toContain('"Scan Direction":"Backward"');
    expect(indexesIn(cutoff)).toEqual(['request_token_log_id_index']);
    // Oldest first along each cut-off's own index, the batch's bound read from it too: no sort of the doomed rows, no
    // sequential scan.
    const logIndexes = (plan: string) => indexesIn(plan).filter((name) => name.startsWith('request_token_log'));
    expect(logIndexes(firstBatch)).toEqual(['request_token_log_timestamp_index']);
    expect(logIndexes(batches.at(-1)!)).toEqual(['request_token_log_id_index']);
    expect(firstBatch).not.toContain('"Node Type":"Sort"');
    // From the second batch on, the DELETE and the read of its bound start past the previous batch's bound (its rows'
    // entries are dead).
    const startsPastBound = (plan: string) => plan.split('\\"timestamp\\" > ').length - 1;
    expect(startsPastBound(firstBatch)).toBe(0);
    expect(startsPastBound(batches[1])).toBe(1);
    const bounds = plans.filter((plan) => plan.includes('"Node Type":"Limit"') && plan.includes('request_token_log_y'));
    expect(bounds.filter((plan) => startsPastBound(plan) === 1).length).toBeGreaterThan(0);
    // Partitions the planner reads whole are ones it thinks empty (never analysed: months ahead, months before the
    // data) or the month the time limit (day 3) cuts mostly away: never a month that is kept.
    const seqScanned = [...firstBatch.matchAll(/"Node Type":"Seq Scan"[^}]*?"Relation Name":"([^"]+)"/g)].map((m) => m[1]);
    expect(seqScanned).not.toContain('request_token_log');
    const kept = seqScanned.filter((name) => {
      const month = monthOfPartition(name);
      return month !== null && month > at(3) && month < new Date();
    });
    expect(kept).toEqual([]);
  });
});

/**
 * Runs `work` (which goes through MikroORM) and EXPLAINs every SELECT or UPDATE it sent, with the values it sent:
 * the statements are recorded at the `pg` client all of them pass through. Writes are rolled back by EXPLAIN itself
 * (plain EXPLAIN runs nothing).
 */
async function ormPlansOf(work: () => Promise<unknown>): Promise<{ text: string; plan: string }[]> {
  const statements: { text: string; values: unknown[] }[] = [];
  const query = pg.Client.prototype.query;
  pg.Client.prototype.query = function (this: pg.Client, config: any, values?: any, callback?: any) {
    const text = typeof config === 'string' ? config : config?.text;
    if (typeof text === 'string' && /^\s*(select|update|delete|with)\b/i.test(text)) {
      statements.push({ text, values: [...((typeof config === 'string' ? values : config.values) ?? [])] });
    }
    return (query as any).call(this, config, values, callback);
  } as typeof query;
  try {
    await work();
  } finally {
    pg.Client.prototype.query = query;
  }
  const plans = [];
  for (const { text, values } of statements) {
    const { rows } = await server.db.pool.query(`explain (format json) ${text}`, values);
    plans.push({ text, plan: JSON.stringify(rows[0]['QUERY PLAN']) });
  }
  return plans;
}

// Every secondary index of request_token is paid on every issue (one more B-tree insert, and its WAL): each one is
// here because a query of the service reads through it. An index that no query needs goes (issue 14: `scope` alone was
// covered by `(scope, issued_at)` and was dropped).
describe('request_token: every secondary index earns its place', () => {
  const tokenDeps = (tenant: string | null) => ({ orm: server.db.orm, pool: server.db.pool, tenant, config: { clockToleranceSeconds: 0 } });
  let small: string;
  beforeAll(async () => {
    // A small second tenant, and a scope of few tokens (each of the 40 others has 500): where an index pays.
    [{ id: small }] = await server.sql(`insert into api_client (name) values ('small tenant') returning id::text`);
    await server.sql(
      `insert into request_token (client_id, scope, max_uses, issued_at)
       select $1, 'rare', 1, $2::timestamptz + i * interval '1 hour' from generate_series(1, 30) i`,
      [small, BASE],
    );
    // A user of many tokens, the oldest ones (as the most active user of bench:scale is, behind newer tokens of others).
    await server.sql(
      `insert into request_token (client_id, scope, user_id, max_uses, issued_at)
       select 1, 'heavy', 'user-heavy', 1, $1::timestamptz + i * interval '1 second' from generate_series(1, 300) i`,
      [BASE],
    );
    await server.sql(
      `insert into request_token (client_id, scope, user_id, max_uses, issued_at)
       select 1, 'scope-' || (i % 40), 'user-' || (i % 5000), 3, $1::timestamptz from generate_series(0, 4999) i`,
      [BASE],
    );
    // The newest tokens all of one scope, as bench:scale issues its 20,000 redemption tokens last: a page of any other
    // scope read along the primary key backwards would walk past all of them.
    await server.sql(
      `insert into request_token (client_id, scope, max_uses, issued_at)
       select 1, 'latest', 1, $1::timestamptz from generate_series(1, 3000) i`,
      [BASE],
    );
    await server.sql('analyze request_token');
    // Looked up once per pool (whether the tables are on Citus): done here, so that it is not among the statements.
    await logIsDistributed(server.db.pool);
  });

  it('has exactly the indexes the queries below use, besides its primary key', async () => {
    const rows = await server.sql<{ indexname: string }>(
      `select indexname from pg_indexes where tablename = 'request_token' and indexname <> 'request_token_pkey' order by 1`,
    );
    expect(rows.map((r) => r.indexname)).toEqual([
      'request_token_client_id_index',
      'request_token_issued_at_index',
      'request_token_scope_client_id_id_index',
      'request_token_scope_issued_at_index',
      'request_token_user_id_id_index',
    ]);
  });

  it("(scope, client_id, id): a tenant's tokens of one scope, newest first, in index order", async () => {
    // A scope of 625 of the tenant's tokens behind 3,000 newer ones of another scope, and the small tenant's rare scope:
    // each page reads its 21 entries backwards along the index from its first row (its cursor too), no sort, and not the
    // primary key walked backwards past the newer tokens of other scopes.
    const [newest] = await server.sql<{ id: string }>(`select max(id)::text as id from request_token where scope = 'scope-7'`);
    const pages = [
      ...(await ormPlansOf(() => listTokens(tokenDeps('1'), { scope: 'scope-7' }, { first: 20, count: false }))),
      ...(await ormPlansOf(() => listTokens(tokenDeps('1'), { scope: 'scope-7' }, { first: 20, after: encodeCursor(newest.id), count: false }))),
      ...(await ormPlansOf(() => listTokens(tokenDeps(small), { scope: 'rare' }, { first: 20, count: false }))),
    ];
    expect(pages).toHaveLength(3);
    for (const { plan } of pages) {
      expect(indexesIn(plan)).toEqual(['request_token_scope_client_id_id_index']);
      expect(plan).toContain('"Scan Direction":"Backward"');
      expect(plan).not.toContain('"Node Type":"Sort"');
      expect(plan).not.toContain('"Filter"');
    }
    // A log listing's total of one scope looks the tokens of its live tail up all at once (`id = ANY (…)`: on
    // bench:scale's million tokens, one scan of this index; here the planner may as well take the primary key), not
    // each row's token in a subquery of its own (server/domain/log-counts.ts).
    const logCount = (await ormPlansOf(() => listLogs(tokenDeps('1'), { scope: 'scope-7' }, { first: 0 }))).find(({ text }) =>
      text.includes('usage_rollup_day'),
    );
    expect(logCount).toBeDefined();
    const lookups = [...planNodes(JSON.parse(logCount!.plan)[0].Plan)].filter(({ node }) => node['Relation Name'] === 'request_token');
    expect(lookups).toHaveLength(1);
    expect(JSON.stringify(lookups[0].node)).toMatch(/\(id = ANY \(\(InitPlan \d+\)\.col1\)\)/);
    expect(['request_token_pkey', 'request_token_scope_client_id_id_index']).toContain(lookups[0].node['Index Name']);
    // The answers: the scope's newest tokens of the tenant, in order.
    const { nodes } = await listTokens(tokenDeps('1'), { scope: 'scope-7' }, { first: 20, count: false });
    const expected = await server.sql<{ id: string }>(
      `select t.id::text as id from request_token t where t.client_id = 1 and t.scope = 'scope-7' order by t.id desc limit 20`,
    );
    expect(nodes.map((token) => token.id)).toEqual(expected.map((row) => row.id));
  });

  it('user_id: the tokens of one user (listing, forgetUser)', async () => {
    const listed = await ormPlansOf(() => listTokens(tokenDeps(null), { userId: 'user-42' }, { first: 20 }));
    expect(listed.length).toBeGreaterThan(0);
    for (const { plan } of listed) expect(indexesIn(plan)).toContain('request_token_user_id_id_index');
    // A user of 300 tokens: the page in index order, (user_id, id) read backwards, 21 rows, no sort of the user's
    // tokens, and not the primary key walked backwards past 5,000 newer tokens of other users.
    const [page] = await ormPlansOf(() => listTokens(tokenDeps(null), { userId: 'user-heavy' }, { first: 20 }));
    expect(indexesIn(page.plan)).toEqual(['request_token_user_id_id_index']);
    expect(page.plan).toContain('"Scan Direction":"Backward"');
    expect(page.plan).not.toContain('"Node Type":"Sort"');
    // forgetUser runs for real (user-43's 4 tokens are revoked; no other test reads them), its statements EXPLAINed after.
    const forgotten = await ormPlansOf(() => forgetUser({ orm: server.db.orm, tenant: null }, 'user-43'));
    const revocation = forgotten.find(({ text }) => /^\s*update "request_token"/i.test(text));
    expect(indexesIn(revocation!.plan)).toContain('request_token_user_id_id_index');
  });

  it('(scope, issued_at): the tokens of one scope, newest first, and their count', async () => {
    // An admin's page of a scope (every client) and its count. The count comes from the usage rollups and the tokens
    // issued since their watermark (here: never compacted, so every token of the scope). A scope of 30 tokens is read
    // by either scope index (the planner is indifferent at that size: see SCOPE_INDEXES above); the tokens of the
    // largest scope (3,000) since the watermark are a time range of (scope, issued_at), as on bench:scale, where the
    // tokens issued since the watermark are a few of the scope's hundreds of thousands.
    const rare = await ormPlansOf(() => listTokens(tokenDeps(null), { scope: 'rare' }, { first: 20 }));
    expect(rare).toHaveLength(2);
    for (const { plan } of rare) expect(indexesIn(plan).filter((index) => SCOPE_INDEXES.includes(index))).toHaveLength(1);
    const count = (await ormPlansOf(() => listTokens(tokenDeps(null), { scope: 'latest' }, { first: 20 }))).find(
      ({ text }) => text.includes('usage_rollup_day'),
    )!;
    expect(count).toBeDefined();
    expect(indexesIn(count.plan).filter((index) => index.startsWith('request_token'))).toEqual(['request_token_scope_issued_at_index']);
  });

  it('(client_id, id): a tenant\'s tokens, newest first', async () => {
    // The page; its count comes from the usage rollups (server/domain/log-counts.ts).
    const listed = await ormPlansOf(() => listTokens(tokenDeps(small), {}, { first: 20 }));
    expect(listed).toHaveLength(2);
    const count = listed.find(({ text }) => text.includes('usage_rollup_day'));
    const page = listed.find((statement) => statement !== count)!;
    expect(count).toBeDefined();
    expect(indexesIn(page.plan)).toContain('request_token_client_id_index');
  });
});

/** Every node of a JSON plan, each with the nodes above it. */
function* planNodes(node: any, above: any[] = []): Generator<{ node: any; above: any[] }> {
  yield { node, above };
  for (const child of node.Plans ?? []) yield* planNodes(child, [...above, node]);
}

describe('a page of the log', () => {
  const deps = { orm: null as never, pool: null as never, tenant: null, config: { clockToleranceSeconds: 0 } };

  it("looks each row's token up once per row shown, after the page's limit, with no Memoize sized for the filter's rows", async () => {
    for (const tokens of ['brief', 'full'] as const) {
      const plans = await ormPlansOf(() =>
        listLogs({ ...deps, orm: server.db.orm, pool: server.db.pool }, { scope: 'scope-7' }, { first: 20, count: false }, tokens),
      );
      expect(plans).toHaveLength(1);
      const [root] = JSON.parse(plans[0].plan);
      const lookups = [...planNodes(root.Plan)].filter(({ node }) => node['Relation Name'] === 'request_token' && node.Alias === 't');
      expect(lookups).toHaveLength(1);
      const [{ above }] = lookups;
      // Above the limit: the join is of the page's 21 rows at most, and nothing caches lookups for more.
      expect(above.some((node) => node['Node Type'] === 'Limit')).toBe(false);
      expect(above.some((node) => node['Node Type'] === 'Memoize')).toBe(false);
      expect(above[above.length - 1]['Plan Rows']).toBeLessThanOrEqual(21);
    }
  });

  it("reads one user's rows newest first in (user_id, id) order: no sort of all the user's rows, no walk past others'", async () => {
    const plans = await ormPlansOf(() =>
      listLogs({ ...deps, orm: server.db.orm, pool: server.db.pool }, { userId: 'reader-7' }, { first: 20, count: false }, 'brief'),
    );
    expect(plans).toHaveLength(1);
    expect(indexesIn(plans[0].plan)).toContain('request_token_log_user_id_id_client_id_index');
    const [root] = JSON.parse(plans[0].plan);
    expect([...planNodes(root.Plan)].some(({ node }) => node['Node Type'] === 'Sort' && node['Plan Rows'] > 21)).toBe(false);
  });

  it("counts one user's rows of a tenant from the (user_id, id) index alone, which carries the row's client", async () => {
    // A total of the user filter is count(*) of the log (the rollups are not keyed by user): under a tenant, each of the
    // user's rows is checked against the tenant, from the index's client_id rather than the row's page. (An index-only
    // scan needs the pages marked all-visible, as autovacuum marks a log's settled pages.)
    await server.sql('vacuum (analyze) request_token_log');
    const plans = await ormPlansOf(() =>
      listLogs({ ...deps, orm: server.db.orm, pool: server.db.pool, tenant: '1' }, { userId: 'reader-7' }, { first: 20 }, 'brief'),
    );
    const count = plans.find(({ text }) => /count\(\*\)/.test(text) && !text.includes('limit'));
    expect(count).toBeDefined();
    const scans = [...planNodes(JSON.parse(count!.plan)[0].Plan)].map(({ node }) => node).filter((node) => node['Relation Name']);
    expect(scans.length).toBeGreaterThan(0);
    for (const scan of scans.filter((node) => node['Plan Rows'] > 1)) {
      expect(scan['Node Type']).toBe('Index Only Scan');
      expect(partitionIndexes.get(scan['Index Name']) ?? scan['Index Name']).toBe('request_token_log_user_id_id_client_id_index');
    }
  });
});
