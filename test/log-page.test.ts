import { graphql, type GraphQLObjectType } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schema } from '../schema/index.js';
import { createContext } from '../server/context.js';
import type { Permission } from '../server/database/entities/api-key.js';
import { decodeCursor, encodeCursor } from '../server/domain/paging.js';
import { startTestServer, type TestServer } from './support/harness.js';

/**
 * The page of one token's logs (the SDK's RequestTokenLogs document, `npm run bench`'s read scenario): its rows, their
 * tokens and its count in one statement, each token read only as far as the query selects it, and the same answers as
 * ever.
 */

let server: TestServer;
const clients: string[] = [];
let busy: string;
let quiet: string;
let foreign: string;
let statements: { name?: string; text: string }[] = [];

beforeAll(async () => {
  server = await startTestServer();
  for (const name of ['page-a', 'page-b']) {
    const [{ id }] = await server.sql<{ id: string }>(`insert into api_client (name) values ($1) returning id::text`, [name]);
    clients.push(id);
  }
  const tokens = await server.sql<{ id: string }>(
    `insert into request_token (client_id, scope, user_id, max_uses, target_url, data, expires_at)
     values ($1, 'paged', 'alice', 50, 'https://example.com/a', '{"k": 1}', now() + interval '1 day'),
            ($1, 'paged', null, 5, null, null, null),
            ($2, 'paged', 'bob', 5, null, null, null)
     returning id::text`,
    clients,
  );
  [busy, quiet, foreign] = tokens.map((t) => t.id);
  await server.sql(
    `insert into request_token_log (client_id, token_id, error_code, user_id, status_code, timestamp)
     select t.client_id, t.id, case when i % 5 = 0 then 'SCOPE_MISMATCH' end, 'u' || i, 200, now() - i * interval '1 minute'
     from request_token t cross join generate_series(1, 30) i where t.id = any($1::bigint[])`,
    [[busy, foreign]],
  );
  const query = server.db.pool.query.bind(server.db.pool);
  server.db.pool.query = ((config: any, ...rest: any[]) => {
    statements.push(typeof config === 'string' ? { text: config } : config);
    return (query as any)(config, ...rest);
  }) as typeof query;
});
afterAll(() => server?.close());

const PAGE = /* GraphQL */ `
  query ($filter: RequestTokenLogFilter, $first: Int, $after: String) {
    requestTokenLogs(filter: $filter, first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      edges { cursor node { id errorCode userId statusCode timestamp token { id scope } } }
    }
  }
`;

/** Runs `source` as a key of `clientId` (null: admin) may, counting the statements it sends. */
async function run(source: string, variables: Record<string, unknown>, clientId: string | null = clients[0]) {
  const permissions: Permission[] = clientId === null ? ['admin'] : ['read', 'issue'];
  const contextValue = createContext(server.services, { keyId: 'test', clientId, permissions });
  statements = [];
  const result = (await graphql({ schema, source, variableValues: variables, contextValue })) as { data: any; errors?: unknown };
  expect(result.errors).toBeUndefined();
  return { data: result.data, statements: [...statements] };
}

const countOf = async (tokenId: string, below?: string) =>
  Number(
    (
      await server.sql('select count(*) as n from request_token_log where token_id = $1 and ($2::bigint is null or id < $2)', [
        tokenId,
        below ?? null,
      ])
    )[0].n,
  );

describe("a page of one token's logs", () => {
  it('reads its rows, their tokens and its count in one statement', async () => {
    const { data, statements: sent } = await run(PAGE, { filter: { tokenId: busy }, first: 20 });
    expect(sent).toHaveLength(1);
    const page = data.requestTokenLogs;
    expect(page.totalCount).toBe(30);
    expect(page.edges).toHaveLength(20);
    expect(page.pageInfo).toMatchObject({ hasNextPage: true, hasPreviousPage: false });
    for (const { node } of page.edges) expect(node.token).toEqual({ id: busy, scope: 'paged' });
    const ids = page.edges.map((e: any) => Number(e.node.id));
    expect(ids).toEqual([...ids].sort((a, b) => b - a));
  });

  it('counts the whole filter on every page, at its end, past it, and for a token of no rows or of another tenant', async () => {
    const first = await run(PAGE, { filter: { tokenId: busy }, first: 20 });
    const after = first.data.requestTokenLogs.pageInfo.endCursor;
    const second = await run(PAGE, { filter: { tokenId: busy }, first: 20, after });
    expect(second.data.requestTokenLogs.totalCount).toBe(30);
    expect(second.data.requestTokenLogs.edges).toHaveLength(10);
    expect(second.data.requestTokenLogs.pageInfo).toMatchObject({ hasNextPage: false, hasPreviousPage: true });
    // Past the last row the page is empty and carries no count: it is counted on its own.
    const last = second.data.requestTokenLogs.pageInfo.endCursor;
    const past = await run(PAGE, { filter: { tokenId: busy }, first: 20, after: last });
    expect(past.data.requestTokenLogs).toMatchObject({ totalCount: 30, edges: [] });
    expect(past.statements).toHaveLength(2);
    // A page of none still reads a row to tell whether any follow, and the count with it.
    const none = await run(PAGE, { filter: { tokenId: busy }, first: 0 });
    expect(none.data.requestTokenLogs).toMatchObject({ totalCount: 30, edges: [], pageInfo: { hasNextPage: true } });
    expect(none.statements).toHaveLength(1);
    for (const tokenId of [quiet, foreign]) {
      const empty = await run(PAGE, { filter: { tokenId }, first: 20 });
      expect(empty.data.requestTokenLogs).toMatchObject({ totalCount: 0, edges: [] });
    }
    // The other tenant and the admin see the foreign token's rows, counted alike.
    const own = await run(PAGE, { filter: { tokenId: foreign }, first: 5 }, clients[1]);
    const admin = await run(PAGE, { filter: { tokenId: foreign }, first: 5 }, null);
    expect(own.data).toEqual(admin.data);
    expect(own.data.requestTokenLogs.totalCount).toBe(await countOf(foreign));
    expect(own.data.requestTokenLogs.totalCount).toBe(30);
    // Rows of one token under two tenants (as a row's client_id says): each tenant's count is of its own rows.
    await server.sql(
      `insert into request_token_log (client_id, token_id)
       select case when i <= 4 then $1::bigint else $2::bigint end, $3 from generate_series(1, 7) i`,
      [clients[0], clients[1], quiet],
    );
    const counts = await Promise.all([clients[0], clients[1], null].map((c) => run(PAGE, { filter: { tokenId: quiet }, first: 2 }, c)));
    expect(counts.map((c) => c.data.requestTokenLogs.totalCount)).toEqual([4, 3, 7]);
    await server.sql('delete from request_token_log where token_id = $1', [quiet]);
    // Filtered further (refusals of the token), the count follows the filter.
    const refused = await run(PAGE, { filter: { tokenId: busy, failed: true }, first: 2 });
    expect(refused.data.requestTokenLogs.totalCount).toBe(6);
    expect(refused.data.requestTokenLogs.edges.every((e: any) => e.node.errorCode === 'SCOPE_MISMATCH')).toBe(true);
    // A cursor in the middle: the count is still the filter's, not what is left below the cursor.
    const middle = await run(PAGE, { filter: { tokenId: busy }, first: 3, after: encodeCursor(first.data.requestTokenLogs.edges[9].node.id) });
    expect(middle.data.requestTokenLogs.totalCount).toBe(30);
    expect(await countOf(busy, first.data.requestTokenLogs.edges[9].node.id)).toBe(20);
  });

  it("reads of each row's token what the query selects, answering every RequestToken field as requestToken does", async () => {
    const fields = Object.keys((schema.getType('RequestToken') as GraphQLObjectType).getFields());
    expect(fields.length).toBeGreaterThan(10);
    const selection = (field: string) => (field === 'logs' ? 'logs(first: 2) { totalCount edges { node { id } } }' : field);
    for (const field of [...fields, '__typename']) {
      const paged = await run(`query ($id: ID) { requestTokenLogs(filter: { tokenId: $id }, first: 2) {
        edges { node { token { ${selection(field)} } } } } }`, { id: busy });
      const page = paged.statements.find((s) => /\blimit\b/.test(s.text))!;
      const alone = await run(`query ($id: ID!) { requestToken(id: $id) { ${selection(field)} } }`, { id: busy });
      for (const { node } of paged.data.requestTokenLogs.edges) expect(node.token, field).toEqual(alone.data.requestToken);
      // The brief reads the id and scope; any other field reads the whole token (its status, its dates, …).
      expect(/t_issued_at/.test(page.text), field).toBe(!['id', 'scope', 'logs', '__typename'].includes(field));
    }
    // Fields selected through fragments count too: each of these needs the whole token.
    const throughFragments = await run(
      `query ($id: ID) { requestTokenLogs(filter: { tokenId: $id }, first: 2) { ...Rows } }
       fragment Rows on RequestTokenLogConnection { edges { node { ... on RequestTokenLog { token { id ...Token } } } } }
       fragment Token on RequestToken { ... { status maxUses } }`,
      { id: busy },
    );
    const whole = await run(`query ($id: ID!) { requestToken(id: $id) { id status maxUses } }`, { id: busy });
    for (const { node } of throughFragments.data.requestTokenLogs.edges) expect(node.token).toEqual(whole.data.requestToken);
    // Read with the page (a token not read there would be loaded by a statement of its own).
    expect(throughFragments.statements).toHaveLength(1);
    // With no token selected, the page joins none.
    const bare = await run(`query ($id: ID) { requestTokenLogs(filter: { tokenId: $id }, first: 2) { edges { node { id } } } }`, { id: busy });
    expect(bare.statements).toHaveLength(1);
    expect(bare.statements[0].text).not.toMatch(/join/i);
    expect(bare.data.requestTokenLogs.edges).toHaveLength(2);
  });
});

describe('cursors', () => {
  it("are base64url of 'id:' and the id, as they always were, for ids of every length", () => {
    const ids = ['1', '7', '42', '999', ...Array.from({ length: 40 }, (_, i) => String(BigInt(3) ** BigInt(i) + BigInt(i)))];
    ids.push('9223372036854775807');
    for (const id of ids) {
      expect(encodeCursor(id)).toBe(Buffer.from(`id:${id}`).toString('base64url'));
      expect(decodeCursor(encodeCursor(id))).toBe(id);
    }
  });
});
