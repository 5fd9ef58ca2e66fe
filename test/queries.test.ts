import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './support/harness.js';
import { issue, redeem, RECORD } from './support/operations.js';

let server: TestServer;
const ids: Record<string, string> = {};

const TOKENS = /* GraphQL */ `
  query Tokens($filter: RequestTokenFilter, $first: Int, $after: String) {
    requestTokens(filter: $filter, first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      edges { cursor node { id scope status } }
    }
  }
`;
const LOGS = /* GraphQL */ `
  query Logs($filter: RequestTokenLogFilter, $first: Int, $after: String) {
    requestTokenLogs(filter: $filter, first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage hasPreviousPage endCursor }
      edges { node { id errorCode userId statusCode token { id scope } } }
    }
  }
`;

// One token in each status, in the `status` scope, plus redemptions in the `logs` scope.
beforeAll(async () => {
  server = await startTestServer();
  const make = async (name: string, input: Record<string, unknown>) => {
    const issued = await issue(server, { scope: 'status', ...input });
    ids[name] = issued.token.id;
    return issued;
  };
  await make('active', { userId: 'alice' });
  await make('notYetValid', { notBefore: new Date(Date.now() + 3_600_000).toISOString() });
  await make('expired', { expiresAt: new Date(Date.now() + 3_600_000).toISOString() });
  await server.sql(`update request_token set expires_at = now() - interval '1 minute' where id = $1`, [ids.expired]);
  const exhausted = await make('exhausted', { userId: 'alice' });
  await redeem(server, { jwt: exhausted.jwt, scope: 'status' });
  await make('revoked', {});
  await server.gql(`mutation($id: ID!) { revokeRequestToken(id: $id) { __typename } }`, { id: ids.revoked });

  const logged = await issue(server, { scope: 'logs', maxUses: 3, userId: 'bob' });
  ids.logged = logged.token.id;
  const ok = await redeem(server, { jwt: logged.jwt, scope: 'logs', userId: 'bob' });
  await server.gql(RECORD, { input: { redemptionId: ok.id, statusCode: 204 } });
  await redeem(server, { jwt: logged.jwt, scope: 'wrong', userId: 'bob' });
  await redeem(server, { jwt: logged.jwt, scope: 'logs' });
});
afterAll(() => server?.close());

describe('requestToken', () => {
  it('finds a token by id with its logs', async () => {
    const res = await server.gql(
      `query($id: ID!) { requestToken(id: $id) { id status logs { totalCount edges { node { errorCode } } } } }`,
      { id: ids.logged },
    );
    expect(res.data.requestToken).toEqual({
      id: ids.logged,
      status: 'ACTIVE',
      logs: {
        totalCount: 3,
        edges: [{ node: { errorCode: null } }, { node: { errorCode: 'SCOPE_MISMATCH' } }, { node: { errorCode: null } }],
      },
    });
  });

  it('answers null for an unknown or malformed id', async () => {
    for (const id of ['424242424', 'not-an-id']) {
      const res = await server.gql(`query($id: ID!) { requestToken(id: $id) { id } }`, { id });
      expect(res.data).toEqual({ requestToken: null });
    }
  });
});

describe('requestTokens', () => {
  it.each([
    ['ACTIVE', 'active'],
    ['NOT_YET_VALID', 'notYetValid'],
    ['EXPIRED', 'expired'],
    ['EXHAUSTED', 'exhausted'],
    ['REVOKED', 'revoked'],
  ])('filters by derived status %s', async (status, name) => {
    const res = await server.gql(TOKENS, { filter: { scope: 'status', status } });
    expect(res.data.requestTokens.totalCount).toBe(1);
    expect(res.data.requestTokens.edges[0].node).toEqual({ id: ids[name], scope: 'status', status });
  });

  it('filters by user', async () => {
    const res = await server.gql(TOKENS, { filter: { userId: 'alice' } });
    expect(res.data.requestTokens.edges.map((e: any) => e.node.id).sort()).toEqual([ids.active, ids.exhausted].sort());
  });

  it('pages newest first with cursors and a total count', async () => {
    const first = await server.gql(TOKENS, { filter: { scope: 'status' }, first: 2 });
    const page1 = first.data.requestTokens;
    expect(page1.totalCount).toBe(5);
    expect(page1.pageInfo).toMatchObject({ hasNextPage: true, hasPreviousPage: false });
    expect(page1.edges.map((e: any) => e.node.id)).toEqual([ids.revoked, ids.exhausted]);

    const second = await server.gql(TOKENS, { filter: { scope: 'status' }, first: 2, after: page1.pageInfo.endCursor });
    expect(second.data.requestTokens.edges.map((e: any) => e.node.id)).toEqual([ids.expired, ids.notYetValid]);
    expect(second.data.requestTokens.pageInfo.hasPreviousPage).toBe(true);

    const third = await server.gql(TOKENS, {
      filter: { scope: 'status' },
      first: 2,
      after: second.data.requestTokens.pageInfo.endCursor,
    });
    expect(third.data.requestTokens.edges.map((e: any) => e.node.id)).toEqual([ids.active]);
    expect(third.data.requestTokens.pageInfo.hasNextPage).toBe(false);
  });

  it('refuses a bad cursor or page size with a coded GraphQL error', async () => {
    for (const variables of [{ after: 'bogus' }, { first: 1000 }, { first: -1 }]) {
      const res = await server.gql(TOKENS, variables);
      expect(res.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
    }
  });
});

describe('requestTokenLogs', () => {
  const nodes = (res: any) => res.data.requestTokenLogs.edges.map((e: any) => e.node);

  it('filters by token, scope and outcome', async () => {
    const all = await server.gql(LOGS, { filter: { tokenId: ids.logged } });
    expect(all.data.requestTokenLogs.totalCount).toBe(3);
    const failed = await server.gql(LOGS, { filter: { scope: 'logs', failed: true } });
    expect(nodes(failed)).toEqual([
      expect.objectContaining({ errorCode: 'SCOPE_MISMATCH', token: { id: ids.logged, scope: 'logs' } }),
    ]);
    const succeeded = await server.gql(LOGS, { filter: { scope: 'logs', failed: false } });
    expect(nodes(succeeded)).toHaveLength(2);
  });

  it('filters by signed-in user and by status code', async () => {
    const byUser = await server.gql(LOGS, { filter: { tokenId: ids.logged, userId: 'bob' } });
    expect(byUser.data.requestTokenLogs.totalCount).toBe(2);
    const byStatus = await server.gql(LOGS, { filter: { statusCode: 204 } });
    expect(nodes(byStatus)).toEqual([expect.objectContaining({ statusCode: 204, errorCode: null })]);
  });

  it('filters by time range', async () => {
    const future = new Date(Date.now() + 60_000).toISOString();
    const past = new Date(Date.now() - 3_600_000).toISOString();
    expect((await server.gql(LOGS, { filter: { since: future } })).data.requestTokenLogs.totalCount).toBe(0);
    const recent = await server.gql(LOGS, { filter: { since: past, until: future, tokenId: ids.logged } });
    expect(recent.data.requestTokenLogs.totalCount).toBe(3);
  });

  it('pages through logs', async () => {
    const first = await server.gql(LOGS, { filter: { tokenId: ids.logged }, first: 2 });
    expect(nodes(first)).toHaveLength(2);
    expect(first.data.requestTokenLogs.pageInfo.hasNextPage).toBe(true);
    const rest = await server.gql(LOGS, {
      filter: { tokenId: ids.logged },
      first: 2,
      after: first.data.requestTokenLogs.pageInfo.endCursor,
    });
    expect(nodes(rest)).toHaveLength(1);
    expect(rest.data.requestTokenLogs.pageInfo.hasNextPage).toBe(false);
  });
});
