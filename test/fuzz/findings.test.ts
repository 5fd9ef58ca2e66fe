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
});
