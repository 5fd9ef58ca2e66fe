import { graphql } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schema } from '../schema/index.js';
import { createContext } from '../server/context.js';
import { startTestServer, type TestServer } from './support/harness.js';

/**
 * Nested pages and counts load in batches (the Pothos dataloader plugin): one request's SQL statements grow with the
 * depth of its query, not with the rows it returns. The query runs on the schema directly, without the edge's cost
 * limit, so that a large nesting shows what the data layer does with it.
 */

let server: TestServer;
let statements = 0;

// A page of logs, each log's token, that token's log page with its count, and one level more.
const NESTED = /* GraphQL */ `
  query ($n: Int) {
    requestTokenLogs(first: $n) {
      totalCount
      edges { node { id token { id logs(first: $n) { totalCount edges { node { id token { id logs(first: 2) { totalCount } } } } } } } }
    }
  }
`;

beforeAll(async () => {
  server = await startTestServer();
  // 60 tokens with 3 log rows each, in two tenants' worth of ids (client 1).
  await server.sql(`insert into request_token (client_id, scope, max_uses) select 1, 'batch', 5 from generate_series(1, 60)`);
  await server.sql(
    `insert into request_token_log (client_id, token_id, error_code) select 1, t.id, case when i = 3 then 'SCOPE_MISMATCH' end
     from request_token t cross join generate_series(1, 3) i`,
  );
  // Every statement the request sends: through the ORM (its query logger) and through the hot-path pool.
  // MikroORM hands each statement it runs to its logger's logQuery, whether query logging is on or not.
  const logger = server.db.orm.config.getLogger();
  const logQuery = logger.logQuery.bind(logger);
  logger.logQuery = (context) => {
    statements++;
    logQuery(context);
  };
  const query = server.db.pool.query.bind(server.db.pool);
  server.db.pool.query = ((...args: Parameters<typeof query>) => {
    statements++;
    return query(...args);
  }) as typeof query;
});
afterAll(() => server?.close());

async function run(n: number, source = NESTED, variables: Record<string, unknown> = {}) {
  const contextValue = createContext(server.services, { keyId: 'test', clientId: '1', permissions: ['read'] });
  statements = 0;
  const result = await graphql({ schema, source, variableValues: { n, ...variables }, contextValue });
  return { result: result as { data: any; errors?: unknown }, statements };
}

describe('nested pages and counts', () => {
  it('answer correctly: every log names its token, every token its own count', async () => {
    const { result } = await run(100);
    expect(result.errors).toBeUndefined();
    const edges = result.data.requestTokenLogs.edges;
    expect(result.data.requestTokenLogs.totalCount).toBe(180);
    expect(edges).toHaveLength(100);
    for (const { node } of edges) {
      expect(node.token.logs.totalCount).toBe(3);
      expect(node.token.logs.edges).toHaveLength(3);
      for (const inner of node.token.logs.edges) {
        expect(inner.node.token.id).toBe(node.token.id);
        expect(inner.node.token.logs.totalCount).toBe(3);
      }
    }
  });

  it('take as many statements for 100 rows as for 2: one batch per level, not one query per row', async () => {
    const few = await run(2);
    const many = await run(100);
    expect(few.result.errors).toBeUndefined();
    expect(many.result.errors).toBeUndefined();
    // Level by level: the page and its count, the tokens, their pages and counts, the tokens, their counts and pages.
    expect(many.statements).toBeGreaterThanOrEqual(5);
    expect(many.statements).toBeLessThanOrEqual(8);
    expect(many.statements).toBe(few.statements);
  });
});

// The dashboard's page of logs (the SDK's RequestTokenLogs document, as `npm run bench`'s read scenario sends it).
const PAGE = /* GraphQL */ `
  query ($n: Int, $filter: RequestTokenLogFilter) {
    requestTokenLogs(filter: $filter, first: $n) {
      totalCount
      edges { node { id errorCode token { id scope status maxUses } } }
    }
  }
`;

describe('a page of logs', () => {
  it('reads its rows and their tokens in one statement, besides the count', async () => {
    const { result, statements } = await run(20, PAGE);
    expect(result.errors).toBeUndefined();
    expect(result.data.requestTokenLogs.totalCount).toBe(180);
    const edges = result.data.requestTokenLogs.edges;
    expect(edges).toHaveLength(20);
    const [token] = await server.sql('select id::text, scope from request_token where id = (select token_id from request_token_log where id = $1)', [edges[0].node.id]);
    expect(edges[0].node.token).toEqual({ id: token.id, scope: 'batch', status: 'ACTIVE', maxUses: 5 });
    expect(statements).toBe(2);
  });

  it('shows no token for a refusal no token owns', async () => {
    await server.sql(`insert into request_token_log (client_id, token_id, error_code) values (1, 0, 'TOKEN_MALFORMED')`);
    try {
      const { result } = await run(1, PAGE);
      expect(result.errors).toBeUndefined();
      expect(result.data.requestTokenLogs.edges[0].node).toMatchObject({ errorCode: 'TOKEN_MALFORMED', token: null });
    } finally {
      await server.sql(`delete from request_token_log where token_id = 0`);
    }
  });
});
