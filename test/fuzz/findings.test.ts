import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/harness.js';

// What the fuzzer found (test/fuzz/fuzz.test.ts), kept as plain cases so that they stay fixed whatever the seed.
let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());

const OUT_OF_RANGE = ['9223372036854775808', '99999999999999999999', '-1', '0', '00001'];

describe('found by the fuzzer', () => {
  it.each(OUT_OF_RANGE)('requestToken(id: "%s") answers null, not a 500', async (id) => {
    const res = await server.gql('query($id: ID!) { requestToken(id: $id) { id } }', { id });
    expect(res.errors).toBeUndefined();
    expect(res.data.requestToken).toBeNull();
  });

  it.each(OUT_OF_RANGE)('revokeRequestToken(id: "%s") answers NotFoundError, not a 500', async (id) => {
    const res = await server.gql('mutation($id: ID!) { revokeRequestToken(id: $id) { __typename } }', { id });
    expect(res.errors).toBeUndefined();
    expect(res.data.revokeRequestToken.__typename).toBe('NotFoundError');
  });

  it.each([-2034482044, 70000, 99])('requestTokenLogs(filter: { statusCode: %i }) is a validation error, not a 500', async (statusCode) => {
    const res = await server.gql(
      'query($filter: RequestTokenLogFilter) { requestTokenLogs(filter: $filter) { totalCount } }',
      { filter: { statusCode } },
    );
    expect(res.status).toBe(200);
    expect(JSON.stringify(res.errors)).not.toContain('INTERNAL_SERVER_ERROR');
    expect(res.errors?.[0].message).toMatch(/statusCode: must be an HTTP status code/);
  });

  // Year 0 (and anything an offset pushes before year 1 or past 9999) is a valid JavaScript Date that PostgreSQL cannot
  // store: the ORM's revokeRequestTokens answered 500 with it (seed 671024769, 2026-11-30).
  it.each(['0000-01-01T00:00:00Z', '0001-01-01T00:00:00+01:00', '9999-12-31T23:30:00-01:00'])(
    'a DateTime of %s is a validation error, not a 500',
    async (issuedBefore) => {
      const res = await server.gql(
        'mutation($filter: RevokeRequestTokensFilter!) { revokeRequestTokens(filter: $filter) { __typename } }',
        { filter: { issuedBefore, userId: 'user-1' } },
      );
      expect(JSON.stringify(res.errors)).not.toContain('INTERNAL_SERVER_ERROR');
      expect(res.errors?.[0].message).toMatch(/DateTime must be between 0001-01-01 and 9999-12-31/);
    },
  );

  it('DateTimes at the edges of that range are taken', async () => {
    const res = await server.gql(
      'query($filter: RequestTokenLogFilter) { requestTokenLogs(filter: $filter) { totalCount } }',
      { filter: { since: '0001-01-01T00:00:00Z', until: '9999-12-31T23:59:59Z' } },
    );
    expect(res.errors).toBeUndefined();
  });
});
