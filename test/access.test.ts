import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../server/domain/api-keys.js';
import { ApiKey } from '../server/database/entities/api-key.js';
import { startTestServer, type TestServer } from './support/harness.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());

const QUERY = '{ requestTokens { totalCount } }';

describe('API keys', () => {
  it.each([
    ['no Authorization header', null],
    ['a key of the wrong shape', 'hello'],
    ['an unknown key', 'rt_AAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB'],
  ])('answers 401 UNAUTHENTICATED for %s', async (_name, key) => {
    const res = await server.gql(QUERY, {}, key);
    expect(res.status).toBe(401);
    expect(res.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
    expect(res.data).toBeUndefined();
  });

  it('answers 401 for a key whose secret is wrong', async () => {
    const [, id] = server.apiKey.split('_');
    const res = await server.gql(QUERY, {}, `rt_${id}_${'x'.repeat(43)}`);
    expect(res.status).toBe(401);
  });

  it('accepts a valid key and stores only a hash of it', async () => {
    const res = await server.gql(QUERY);
    expect(res.status).toBe(200);
    const rows = await server.sql('select * from api_key');
    expect(JSON.stringify(rows)).not.toContain(server.apiKey.split('_').slice(2).join('_'));
  });

  it('refuses revoked and expired keys', async () => {
    const em = server.db.orm.em.fork();
    const { key: revoked } = await createApiKey(em, { name: 'revoked', permissions: ['admin'] });
    await em.nativeUpdate(ApiKey, { id: revoked.split('_')[1] }, { revokedAt: new Date() });
    const { key: expired } = await createApiKey(em, {
      name: 'expired',
      permissions: ['admin'],
      expiresAt: new Date(Date.now() - 1000),
    });
    expect((await server.gql(QUERY, {}, revoked)).status).toBe(401);
    expect((await server.gql(QUERY, {}, expired)).status).toBe(401);
  });

  it('serves GraphiQL to a browser without a key', async () => {
    const res = await fetch(server.graphqlUrl, { headers: { accept: 'text/html' } });
    expect(res.status).toBe(200);
    const html = await res.text();
    expect(html).toContain('GraphiQL');
    expect(html).toContain('createRequestToken');
    // Served from the package, not a CDN: it works on a machine without internet access.
    expect(html).not.toMatch(/unpkg|jsdelivr|cdnjs/);
  });
});

describe('errors', () => {
  it('masks unexpected errors and logs them on the server', async () => {
    // Break the database under the server: the failure must not leak SQL or stack traces.
    await server.sql('alter table request_token rename to request_token_gone');
    try {
      const res = await server.gql('{ requestTokens { totalCount } }');
      expect(res.errors?.[0].message).toBe('Unexpected error.');
      expect(JSON.stringify(res)).not.toMatch(/request_token_gone|relation|stack|at /);
    } finally {
      await server.sql('alter table request_token_gone rename to request_token');
    }
  });

  it('answers /healthz with 200 while the database answers', async () => {
    const res = await fetch(`${server.url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });
});
