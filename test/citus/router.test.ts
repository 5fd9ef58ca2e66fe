import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { functionName } from '../../server/database/citus.js';
import { REDEEM_ALONE_SQL, REDEEM_SQL, REFUSE_SQL } from '../../server/domain/redeem.js';
import { ISSUE_SQL, ISSUE_WITH_ID_SQL } from '../../server/domain/tokens.js';
import type { RunningServices } from '../../server/services.js';
import type { NamedStatement } from '../../server/domain/named-sql.js';
import { ensureLogPartitions } from '../../server/domain/log-partitions.js';
import { startTestServer, type TestServer } from '../support/harness.js';
import { issue, redeem } from '../support/operations.js';

// Every hot statement on Citus reaches one shard: read from Citus's own counters of single- and multi-shard
// executions (citus_stat_counters), and from the plans. Runs only on a Citus coordinator (`npm run test:citus`).
const citus = inject('citus');

let server: TestServer;
beforeAll(async () => {
  if (citus) server = await startTestServer({ MAX_BODY_BYTES: String(8 * 1024 * 1024) });
});
afterAll(() => server?.close());

const resetCounters = () =>
  server.sql('select citus_stat_counters_reset(oid) from pg_database where datname = current_database()');
const counters = async () =>
  (
    await server.sql<{ single: number; multi: number }>(
      `select query_execution_single_shard::int as single, query_execution_multi_shard::int as multi
       from citus_stat_counters where name = current_database()`,
    )
  )[0];

/** Runs `work` and answers the counters of what it ran (the counter statements themselves count as nothing). */
async function counted(work: () => Promise<unknown>) {
  // The API key is then in the process's cache (5 s): its look-up is not counted with the work.
  await server.gql('{ viewer { __typename } }');
  await resetCounters();
  await work();
  await server.services.refusalLog.flush();
  return counters();
}

describe.skipIf(!citus)('on Citus, every hot statement is a router query', () => {
  it('finds the tables distributed at start-up and delegates the hot statements', () => {
    expect((server.services as RunningServices).citus.routed).toBe(true);
    const types = Object.fromEntries((server.services as RunningServices).citus.layout!.tables.map((t) => [t.name, t.type]));
    expect(types).toMatchObject({
      request_token: 'distributed',
      request_token_log: 'distributed',
      request_token_idempotency: 'distributed',
      api_client: 'reference',
      api_key: 'reference',
      signing_key: 'reference',
    });
    // Micro-batches would span shards: one delegated statement per redemption instead.
    expect(server.services.redeemBatcher).toBeNull();
  });

  it('issues, redeems (with and without an idempotency key) and refuses without a multi-shard execution', async () => {
    let jwt = '';
    const issued = await counted(async () => {
      ({ jwt } = await issue(server, { scope: 'router', maxUses: 2 }));
    });
    const redeemed = await counted(async () => {
      expect((await redeem(server, { jwt, scope: 'router' })).__typename).toBe('Redemption');
    });
    const keyed = await counted(async () => {
      expect((await redeem(server, { jwt, scope: 'router', idempotencyKey: 'k-1' })).__typename).toBe('Redemption');
      // The replay of the same key: found by (token_id, key).
      expect((await redeem(server, { jwt, scope: 'router', idempotencyKey: 'k-1' })).__typename).toBe('Redemption');
    });
    const refused = await counted(async () => {
      expect((await redeem(server, { jwt, scope: 'elsewhere' })).code).toBe('SCOPE_MISMATCH');
      expect((await redeem(server, { jwt, scope: 'router' })).code).toBe('MAX_USES_EXCEEDED');
    });
    const untied = await counted(async () => {
      expect((await redeem(server, { jwt: 'not-a-jwt', scope: 'router' })).code).toBe('TOKEN_MALFORMED');
    });
    console.log(`citus executions per operation: ${JSON.stringify({ issued, redeemed, keyed, refused, untied })}`);
    // One single-shard execution per statement the service sends, none multi-shard. Sent to the coordinator as plain
    // statements (not delegated), the same work measured issue 2, redeem 4, keyed 9, refused 16.
    // One more allowed for a background statement of the process (the key ring's refresh) landing in the window. The
    // untied refusal is written by the batched writer's COPY (token id 0: one shard); its stale-hour mark for the
    // usage rollups goes to a plain table on the coordinator, no shard.
    const most = { issued: 2, redeemed: 2, keyed: 4, refused: 5, untied: 2 };
    for (const [what, c] of Object.entries({ issued, redeemed, keyed, refused, untied })) {
      expect({ what, multi: c.multi }).toEqual({ what, multi: 0 });
      expect(c.single, what).toBeGreaterThan(0);
      expect(c.single, what).toBeLessThanOrEqual(most[what as keyof typeof most]);
    }
  });

  it('logs a refusal that no stored token owns (another tenant’s token) with token id 0, on one shard', async () => {
    const { jwt } = await issue(server, { scope: 'router' });
    const [client] = await server.sql(`insert into api_client (name) values ('router-other') returning id`);
    const other = await server.gql(
      `mutation($c: ID!) { createApiKey(input: { name: "other", clientId: $c, permissions: [REDEEM] }) {
        ... on CreateApiKeySuccess { key } } }`,
      { c: String(client.id) },
    );
    const key = other.data.createApiKey.key as string;
    const c = await counted(async () => {
      const res = await server.gql(
        'mutation($jwt: String!) { redeemRequestToken(input: { jwt: $jwt, scope: "router" }) { ... on TokenRejectedError { code tokenId } } }',
        { jwt },
        key,
      );
      expect(res.data.redeemRequestToken).toEqual({ code: 'TOKEN_NOT_FOUND', tokenId: null });
    });
    expect(c.multi).toBe(0);
    const rows = await server.sql(`select token_id from request_token_log where client_id = $1`, [client.id]);
    expect(rows.map((r) => String(r.token_id))).toEqual(['0']);
  });

  it('plans each delegated statement as one task on one worker', async () => {
    const [token] = await server.sql(`select id from request_token limit 1`);
    for (const [statement, types] of [
      [REDEEM_SQL, REDEEM_SQL],
      [REDEEM_ALONE_SQL, REDEEM_ALONE_SQL],
      [REFUSE_SQL, REFUSE_SQL],
      [ISSUE_SQL, ISSUE_WITH_ID_SQL],
    ] as [NamedStatement<string>, NamedStatement<string>][]) {
      // The token's id where the statement routes by it (the issue function's first argument is the new id).
      const args = types.params.map((p, i) =>
        p === 'tokenId' || (types.name === ISSUE_WITH_ID_SQL.name && i === 0) ? `${token.id}::bigint` : `null::${types.types[p]}`,
      );
      const plan = (await server.sql(`explain (costs off) select * from ${functionName(statement.name)}(${args.join(', ')})`))
        .map((r) => r['QUERY PLAN'])
        .join('\n');
      expect(plan, statement.name).toMatch(/Task Count: 1\b/);
      expect(plan, statement.name).toMatch(/Function Scan on rt_/);
    }
  });

  it('issues in bulk with statements that each reach one shard', async () => {
    const c = await counted(async () => {
      const res = await server.gql(
        'mutation($inputs: [CreateRequestTokenInput!]!) { createRequestTokens(inputs: $inputs) { __typename } }',
        { inputs: Array.from({ length: 100 }, (_, i) => ({ scope: 'router-bulk', userId: String(i) })) },
      );
      expect(res.data.createRequestTokens.__typename).toBe('CreateRequestTokensSuccess');
    });
    expect(c.multi).toBe(0);
  });
});

describe.skipIf(!citus)('on Citus, partition upkeep', () => {
  it('creates the coming months of the log after distribution, each distributed and co-located with request_token', async () => {
    const far = new Date(Date.UTC(2031, 4, 1));
    const created = await ensureLogPartitions(server.db.pool, { from: far, to: far });
    expect(created).toEqual(['request_token_log_y2031m05']);
    const rows = await server.sql(
      `select citus_table_type as type, distribution_column as column,
         colocation_id = (select colocation_id from citus_tables where table_name = 'request_token'::regclass) as colocated
       from citus_tables where table_name = 'request_token_log_y2031m05'::regclass`,
    );
    expect(rows).toEqual([{ type: 'distributed', column: 'token_id', colocated: true }]);
    // A row for that month goes to its token's shard.
    const [token] = await server.sql(`select id from request_token limit 1`);
    await server.sql(`insert into request_token_log (token_id, timestamp) values ($1, '2031-05-02T00:00:00Z')`, [token.id]);
    expect(await server.sql(`select count(*)::int as n from request_token_log_y2031m05`)).toEqual([{ n: 1 }]);
  });
});
