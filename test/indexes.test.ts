import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { revokeTokensStatement } from '../server/domain/bulk-revoke.js';
import { truncateLogs } from '../server/domain/log-retention.js';
import { usageStats } from '../server/domain/usage-stats.js';
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
    `insert into request_token_log (token_id, error_code, status_code, timestamp)
     select (select min(id) from request_token) + (i % 20000),
       case when i % 7 = 0 then 'TOKEN_EXPIRED' end, 200 + (i % 4) * 100,
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
 * Runs `work` with a pool that records each statement it sends (and runs it, inside a transaction rolled back at the
 * end, so the work sees real answers), then EXPLAINs every recorded statement on that same transaction.
 */
async function plansOf(work: (pool: pg.Pool) => Promise<unknown>, client?: pg.PoolClient): Promise<string[]> {
  const own = client ? null : await server.db.pool.connect();
  const runner = (client ?? own)!;
  const statements: { text: string; values: unknown[] }[] = [];
  const recorder = {
    async query(text: string | { text: string; values?: unknown[] }, values?: unknown[]) {
      const statement = typeof text === 'string' ? { text, values: values ?? [] } : { text: text.text, values: text.values ?? [] };
      // The work's own transaction control stays out: everything runs inside the transaction rolled back below.
      if (/^\s*(begin|commit|rollback|set local)\b/i.test(statement.text)) return { rows: [] };
      // The services build their parameter arrays as they go: keep a copy of what was sent.
      statements.push({ text: statement.text, values: [...statement.values] });
      return runner.query(statement.text, statement.values);
    },
    async connect() {
      return { query: recorder.query, release() {} };
    },
  } as unknown as pg.Pool;
  if (own) await own.query('begin');
  try {
    await work(recorder);
    const plans: string[] = [];
    for (const { text, values } of statements) {
      const { rows } = await runner.query(`explain (format json) ${text}`, values);
      plans.push(JSON.stringify(rows[0]['QUERY PLAN']));
    }
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

describe('indexes behind the dashboard operations (EXPLAIN on 300,000 log rows)', () => {
  it('usage statistics over one day read the log by its timestamp index and tokens by issue time', async () => {
    const [plan] = await plansOf((pool) => usageStats({ pool, tenant: null }, DAY, 'HOUR'));
    expect(indexesIn(plan)).toEqual(expect.arrayContaining(['request_token_issued_at_index', 'request_token_log_timestamp_index']));
    expect(plan).not.toMatch(/"Node Type":"Seq Scan","Parallel Aware":(true|false),"Async Capable":(true|false),"Relation Name":"request_token_log"/);
  });

  it('usage statistics over a month hash a few buckets instead of sorting every log row of the window', async () => {
    const [plan] = await plansOf((pool) => usageStats({ pool, tenant: null }, { since: at(40), until: at(70) }, 'DAY'));
    expect(plan).toContain('"Strategy":"Hashed"');
    expect(plan).not.toContain('"Node Type":"Sort"');
  });

  it('usage statistics of one scope read its tokens through the scope + issue time index', async () => {
    const month = { since: at(30), until: at(60), scope: 'scope-7' };
    const [plan] = await plansOf((pool) => usageStats({ pool, tenant: null }, month, 'DAY'));
    expect(indexesIn(plan)).toContain('request_token_scope_issued_at_index');
  });

  // Bulk revocation runs through MikroORM: its one UPDATE is taken from the service and EXPLAINed (not run).
  const bulkRevocation = () =>
    revokeTokensStatement({ orm: server.db.orm, tenant: null }, { scope: 'scope-3', issuedBefore: at(24) }).getFormattedQuery();
  const planOf = async (sql: string, runner: pg.Pool | pg.PoolClient = server.db.pool) =>
    JSON.stringify((await runner.query(`explain (format json) ${sql}`)).rows[0]['QUERY PLAN']);

  it('bulk revocation by scope and issue time uses the scope + issue time index', async () => {
    expect(indexesIn(await planOf(bulkRevocation()))).toEqual(['request_token_scope_issued_at_index']);
  });

  it('the index assertions can fail: without the new index the same statement plans differently', async () => {
    const client = await server.db.pool.connect();
    try {
      await client.query('begin');
      await client.query('drop index request_token_scope_issued_at_index');
      expect(indexesIn(await planOf(bulkRevocation(), client))).not.toContain('request_token_scope_issued_at_index');
    } finally {
      await client.query('rollback');
      client.release();
    }
  });

  it('retention finds the cut-off by reading the id index backwards and walks each batch along it', async () => {
    const plans = await plansOf((pool) => truncateLogs(pool, { maxCount: 290_000, maxDays: 97 }));
    const [cutoff, , firstBatch] = plans;
    expect(cutoff).toContain('"Scan Direction":"Backward"');
    expect(indexesIn(cutoff)).toEqual(['request_token_log_id_index']);
    // Oldest first along the id index, stopping at the batch size: no sort of the doomed rows, no sequential scan.
    expect(indexesIn(firstBatch)).toContain('request_token_log_id_index');
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
