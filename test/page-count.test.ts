import { graphql } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schema } from '../schema/index.js';
import { createContext } from '../server/context.js';
import { startTestServer, type TestServer } from './support/harness.js';

/**
 * A listing counts its filter only when the query selects `totalCount`: on a log of millions of rows the count costs
 * hundreds of times the page (BENCHMARKS.md, "Scale"). Selected directly, through a fragment or an inline fragment, the
 * total is the same as ever.
 */

let server: TestServer;
let counts = 0;

beforeAll(async () => {
  server = await startTestServer();
  await server.sql(`insert into request_token (client_id, scope, max_uses) select 1, 'paged', 5 from generate_series(1, 30)`);
  await server.sql(
    `insert into request_token_log (client_id, token_id, error_code) select 1, t.id, case when i = 2 then 'SCOPE_MISMATCH' end
     from request_token t cross join generate_series(1, 2) i`,
  );
  // Listings run their statements on the pool (server/domain/listing-statements.ts); the ORM's are counted too, by the
  // logger MikroORM hands each statement it runs to, whether query logging is on or not.
  const isCount = (text: unknown) => typeof text === 'string' && /count\(\*\)/i.test(text);
  const logger = server.db.orm.config.getLogger();
  const logQuery = logger.logQuery.bind(logger);
  logger.logQuery = (context) => {
    if (isCount(context.query)) counts++;
    logQuery(context);
  };
  const query = server.db.pool.query.bind(server.db.pool);
  server.db.pool.query = ((config: unknown, ...rest: unknown[]) => {
    if (isCount(typeof config === 'string' ? config : (config as { text?: string })?.text)) counts++;
    return (query as (...args: unknown[]) => unknown)(config, ...rest);
  }) as typeof query;
});
afterAll(() => server?.close());

async function run(source: string) {
  const contextValue = createContext(server.services, { keyId: 'test', clientId: '1', permissions: ['read'] });
  counts = 0;
  const result = (await graphql({ schema, source, contextValue })) as { data: any; errors?: unknown };
  expect(result.errors).toBeUndefined();
  return { data: result.data, counts };
}

describe('a page without totalCount', () => {
  it('runs no count for the logs, and the page is the same', async () => {
    const without = await run(`{ requestTokenLogs(first: 5) { pageInfo { hasNextPage } edges { node { id } } } }`);
    const withCount = await run(`{ requestTokenLogs(first: 5) { totalCount edges { node { id } } } }`);
    expect(without.counts).toBe(0);
    expect(withCount.counts).toBe(1);
    expect(withCount.data.requestTokenLogs.totalCount).toBe(60);
    expect(without.data.requestTokenLogs.edges).toEqual(withCount.data.requestTokenLogs.edges);
    expect(without.data.requestTokenLogs.pageInfo.hasNextPage).toBe(true);
  });

  it('runs no count for the tokens', async () => {
    const without = await run(`{ requestTokens(filter: { scope: "paged" }, first: 5) { edges { node { id } } } }`);
    expect(without.counts).toBe(0);
    expect(without.data.requestTokens.edges).toHaveLength(5);
  });
});

describe('totalCount', () => {
  it('is counted when selected through a fragment, an inline fragment or an alias', async () => {
    const { data, counts: n } = await run(`
      fragment Total on RequestTokenLogConnection { totalCount }
      {
        a: requestTokenLogs(first: 1) { ...Total }
        b: requestTokenLogs(first: 1, filter: { failed: true }) { ... on RequestTokenLogConnection { total: totalCount } }
        c: requestTokens(first: 1, filter: { scope: "paged" }) { ... { totalCount } }
      }`);
    expect(data.a.totalCount).toBe(60);
    expect(data.b.total).toBe(30);
    expect(data.c.totalCount).toBe(30);
    expect(n).toBe(3);
  });
});
