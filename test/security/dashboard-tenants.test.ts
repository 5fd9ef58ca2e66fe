import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/harness.js';
import { CREATE, REDEEM } from '../support/operations.js';
import { tenantKey } from './support.js';

let server: TestServer;
let alice: { key: string };
let bob: { key: string };
let bobJwt: string;

const STATS = `query { usageStats(bucket: DAY) { totals { issued redemptions } scopes { scope issued } } }`;
const LOOKUP = `query($jwt: String!) { findRequestTokenByJwt(jwt: $jwt) { __typename ... on Error { code } } }`;
const BULK = `mutation($filter: RevokeRequestTokensFilter!) { revokeRequestTokens(filter: $filter) {
  __typename ... on RevokeRequestTokensSuccess { revokedCount } } }`;

// Two clients, each with a key that may issue, redeem and read, each issuing and redeeming in its own scope.
beforeAll(async () => {
  server = await startTestServer();
  alice = await tenantKey(server, 'alice', ['issue', 'redeem', 'read']);
  bob = await tenantKey(server, 'bob', ['issue', 'redeem', 'read']);
  for (const [tenant, scope] of [[alice, 'alice-news'], [bob, 'bob-news']] as const) {
    for (let i = 0; i < 2; i++) {
      const res = await server.gql(CREATE, { input: { scope: 'shared', userId: `${scope}-${i}` } }, tenant.key);
      const jwt = res.data.createRequestToken.jwt;
      if (tenant === bob) bobJwt = jwt;
      await server.gql(REDEEM, { input: { jwt, scope: 'shared' } }, tenant.key);
    }
  }
});
afterAll(() => server?.close());

describe('dashboard operations stay within the caller’s client', () => {
  it('counts only the caller’s tokens and redemptions in usageStats', async () => {
    const mine = await server.gql(STATS, {}, alice.key);
    expect(mine.data.usageStats.totals).toEqual({ issued: 2, redemptions: 2 });
    const all = await server.gql(STATS);
    expect(all.data.usageStats.totals).toEqual({ issued: 4, redemptions: 4 });
  });

  it('answers another client’s JWT as not found', async () => {
    const res = await server.gql(LOOKUP, { jwt: bobJwt }, alice.key);
    expect(res.data.findRequestTokenByJwt).toEqual({ __typename: 'NotFoundError', code: 'NOT_FOUND' });
    const own = await server.gql(LOOKUP, { jwt: bobJwt }, bob.key);
    expect(own.data.findRequestTokenByJwt.__typename).toBe('RequestTokenLookup');
  });

  it('revokes in bulk only the caller’s tokens', async () => {
    const res = await server.gql(BULK, { filter: { scope: 'shared' } }, alice.key);
    expect(res.data.revokeRequestTokens.revokedCount).toBe(2);
    const [{ n }] = await server.sql(`select count(*)::int as n from request_token where revoked_at is null`);
    expect(n).toBe(2);
  });
});
