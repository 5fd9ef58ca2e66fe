import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './support/harness.js';
import { redeem } from './support/operations.js';

let server: TestServer;
beforeAll(async () => {
  // 10,000 inputs in one request are larger than the default MAX_BODY_BYTES (256 KiB).
  server = await startTestServer({ MAX_BODY_BYTES: String(8 * 1024 * 1024) });
});
afterAll(() => server?.close());

const CREATE_MANY = /* GraphQL */ `
  mutation CreateMany($inputs: [CreateRequestTokenInput!]!) {
    createRequestTokens(inputs: $inputs) {
      __typename
      ... on CreateRequestTokensSuccess { issued { jwt url token { id scope userId targetUrl data maxUses status } } }
      ... on ValidationError { code message issues { path message } }
    }
  }
`;

const createMany = async (inputs: Record<string, unknown>[]) => {
  const res = await server.gql(CREATE_MANY, { inputs });
  expect(res.errors, JSON.stringify(res.errors)).toBeUndefined();
  return res.data.createRequestTokens;
};
const tokenCount = async () => Number((await server.sql('select count(*) from request_token'))[0].count);

describe('createRequestTokens', () => {
  it('issues every input, in input order, each redeemable', async () => {
    const result = await createMany([
      { scope: 'news', userId: 'a', data: { list: 'weekly' } },
      { scope: 'news', userId: 'b', targetUrl: 'https://example.com/unsubscribe?list=weekly', maxUses: 3 },
      { scope: 'other' },
    ]);
    expect(result.__typename).toBe('CreateRequestTokensSuccess');
    const issued = result.issued;
    expect(issued.map((i: any) => [i.token.scope, i.token.userId, i.token.maxUses])).toEqual([
      ['news', 'a', 1],
      ['news', 'b', 3],
      ['other', null, 1],
    ]);
    expect(issued[0].token.data).toEqual({ list: 'weekly' });
    expect(issued[0].url).toBeNull();
    expect(issued[1].url).toBe(`https://example.com/unsubscribe?list=weekly&rt=${issued[1].jwt}`);
    const ids = issued.map((i: any) => Number(i.token.id));
    expect(ids).toEqual([...ids].sort((x, y) => x - y));
    const rows = await server.sql('select id::text, user_id from request_token where id = any($1::bigint[]) order by id', [ids]);
    expect(rows.map((r) => r.user_id)).toEqual(['a', 'b', null]);
    const redemption = await redeem(server, { jwt: issued[1].jwt, scope: 'news', url: issued[1].url });
    expect(redemption).toMatchObject({ __typename: 'Redemption', usesRemaining: 2, token: { id: issued[1].token.id } });
  });

  it('issues nothing when any input is invalid, and names the index of each offending input', async () => {
    const before = await tokenCount();
    const result = await createMany([
      { scope: 'ok' },
      { scope: 'ok', maxUses: 0 },
      { scope: 'ok' },
      { scope: '', loginMode: 'SESSION' },
    ]);
    expect(result).toMatchObject({ __typename: 'ValidationError', code: 'VALIDATION_FAILED' });
    expect(result.issues.map((i: any) => i.path)).toEqual([
      ['inputs', '1', 'maxUses'],
      ['inputs', '3', 'scope'],
      ['inputs', '3', 'userId'],
    ]);
    expect(await tokenCount()).toBe(before);
  });

  it('checks expiry against the database clock and then too stores nothing, naming the index', async () => {
    const before = await tokenCount();
    const past = new Date(Date.now() - 60_000).toISOString();
    const result = await createMany([{ scope: 'ok' }, { scope: 'ok' }, { scope: 'ok', expiresAt: past }]);
    expect(result).toMatchObject({ __typename: 'ValidationError', code: 'VALIDATION_FAILED' });
    expect(result.issues).toEqual([{ path: ['inputs', '2', 'expiresAt'], message: 'must be in the future' }]);
    expect(await tokenCount()).toBe(before);
  });

  it('refuses more than 10,000 inputs and accepts an empty list', async () => {
    const before = await tokenCount();
    const tooMany = await createMany(Array.from({ length: 10_001 }, () => ({ scope: 's' })));
    expect(tooMany.issues).toEqual([{ path: ['inputs'], message: 'must hold at most 10000 items, got 10001' }]);
    expect(await tokenCount()).toBe(before);
    expect(await createMany([])).toEqual({ __typename: 'CreateRequestTokensSuccess', issued: [] });
  });

  it('issues 10,000 tokens in one call', async () => {
    const before = await tokenCount();
    const inputs = Array.from({ length: 10_000 }, (_, i) => ({ scope: 'bulk', userId: `user-${i}` }));
    const result = await createMany(inputs);
    expect(result.issued).toHaveLength(10_000);
    expect(result.issued.every((r: any, i: number) => r.token.userId === `user-${i}`)).toBe(true);
    expect(new Set(result.issued.map((r: any) => r.jwt)).size).toBe(10_000);
    expect(await tokenCount()).toBe(before + 10_000);
  });
});
