import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureLogPartitions, monthStart } from '../server/domain/log-partitions.js';
import { getLog } from '../server/domain/logs.js';
import { startTestServer, type TestServer } from './support/harness.js';
import { issue, RECORD } from './support/operations.js';

/**
 * Listings and paging on the log partitioned by month: pages run newest first by id across month boundaries, with
 * filters, nested under tokens, and rows of no token (token id 0) read as no token.
 */

let server: TestServer;
let tokenA: string;
let tokenB: string;
/** Every row, as the listing must give it: newest first by id. */
let expected: { id: string; tokenId: string | null }[];

const LOGS = /* GraphQL */ `
  query Logs($filter: RequestTokenLogFilter, $first: Int, $after: String) {
    requestTokenLogs(filter: $filter, first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges { node { id timestamp token { id } } }
    }
  }
`;

beforeAll(async () => {
  server = await startTestServer();
  tokenA = (await issue(server, { scope: 'a', maxUses: 100 })).token.id;
  tokenB = (await issue(server, { scope: 'b', maxUses: 100 })).token.id;
  const now = new Date();
  const from = monthStart(now, -2);
  await ensureLogPartitions(server.db.pool, { from, to: now });
  // Rows on both sides of each month boundary of the last three months, ids ascending with time, the tokens and
  // no token (0) in turn.
  const times: Date[] = [];
  for (const m of [-2, -1, 0]) {
    const start = monthStart(now, m).getTime();
    if (m > -2) times.push(new Date(start - 1), new Date(start - 1000));
    times.push(new Date(start), new Date(start + 1));
  }
  times.sort((a, b) => a.getTime() - b.getTime());
  const owners = [tokenA, tokenB, '0'];
  for (const [i, t] of times.entries()) {
    const owner = owners[i % 3];
    await server.sql(
      `insert into request_token_log (token_id, error_code, timestamp, client_id) values ($1, $2, $3, 1)`,
      [owner, owner === '0' ? 'TOKEN_MALFORMED' : null, t],
    );
  }
  // And one written late with an old time (a refusal batch, an import): pages follow ids, not times.
  await server.sql(`insert into request_token_log (token_id, timestamp, client_id) values ($1, $2, 1)`, [
    tokenA,
    new Date(from.getTime() + 5000),
  ]);
  const rows = await server.sql('select l.id::text as id, l.token_id::text as token_id from request_token_log l order by l.id desc');
  expected = rows.map((r) => ({ id: r.id, tokenId: r.token_id === '0' ? null : r.token_id }));
});
afterAll(() => server?.close());

async function allPages(filter: Record<string, unknown>, first: number) {
  const seen: { id: string; tokenId: string | null; timestamp: string }[] = [];
  let after: string | null = null;
  let totalCount = -1;
  for (let i = 0; i < 50; i++) {
    const res: any = await server.gql(LOGS, { filter, first, after });
    const page = res.data.requestTokenLogs;
    totalCount = page.totalCount;
    seen.push(...page.edges.map((e: any) => ({ id: e.node.id, tokenId: e.node.token?.id ?? null, timestamp: e.node.timestamp })));
    if (!page.pageInfo.hasNextPage) break;
    after = page.pageInfo.endCursor;
  }
  return { seen, totalCount };
}

describe('log listings across months', () => {
  it('page newest first by id through every month, each row once, token id 0 shown as no token', async () => {
    const { seen, totalCount } = await allPages({}, 3);
    expect(totalCount).toBe(expected.length);
    expect(seen.map(({ id, tokenId }) => ({ id, tokenId }))).toEqual(expected);
    // The rows span three months, and the newest id is the oldest time.
    expect(new Set(seen.map((r) => r.timestamp.slice(0, 7))).size).toBe(3);
    expect(seen[0].timestamp < seen[1].timestamp).toBe(true);
  });

  it("filter by token and by time across a month's boundary", async () => {
    const { seen } = await allPages({ tokenId: tokenA }, 2);
    expect(seen.map((r) => r.id)).toEqual(expected.filter((r) => r.tokenId === tokenA).map((r) => r.id));
    const boundary = monthStart(new Date(), -1);
    const since = new Date(boundary.getTime() - 1000).toISOString();
    const until = new Date(boundary.getTime() + 1).toISOString();
    const window = await allPages({ since, until }, 1);
    expect(window.seen.map((r) => r.timestamp)).toEqual([
      boundary.toISOString(),
      new Date(boundary.getTime() - 1).toISOString(),
      new Date(boundary.getTime() - 1000).toISOString(),
    ]);
  });

  it("nest each token's page under it, newest first across months", async () => {
    const res: any = await server.gql(
      `query($a: ID!, $b: ID!) {
        a: requestToken(id: $a) { logs(first: 100) { totalCount edges { node { id } } } }
        b: requestToken(id: $b) { logs(first: 100) { totalCount edges { node { id } } } }
      }`,
      { a: tokenA, b: tokenB },
    );
    for (const [key, id] of [['a', tokenA], ['b', tokenB]] as const) {
      const ids = expected.filter((r) => r.tokenId === id).map((r) => r.id);
      expect(res.data[key].logs.totalCount).toBe(ids.length);
      expect(res.data[key].logs.edges.map((e: any) => e.node.id)).toEqual(ids);
    }
  });

  it('give a row of no token (token id 0) no token id', async () => {
    const none = expected.find((r) => r.tokenId === null)!;
    expect(await getLog({ orm: server.db.orm, pool: server.db.pool, tenant: null }, none.id)).toMatchObject({ id: none.id, tokenId: null });
    const [row] = await server.sql('select token_id::text from request_token_log where id = $1', [none.id]);
    expect(row.token_id).toBe('0');
  });

  it('record a status on a row of an earlier month by its id alone', async () => {
    const oldest = expected[expected.length - 1];
    const res = await server.gql(RECORD, { input: { redemptionId: oldest.id, statusCode: 204 } });
    expect(res.data.recordResponseStatus).toMatchObject({ log: { id: oldest.id, statusCode: 204 } });
  });
});
