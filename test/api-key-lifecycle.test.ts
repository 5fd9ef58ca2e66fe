import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, createAuthenticator } from '../server/domain/api-keys.js';
import { startTestServer, type TestServer } from './support/harness.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());

const HOUR = 3_600_000;

/** A key whose expiry is set on the database's clock, `offset` from its `now()`. */
async function keyExpiringIn(offset: string): Promise<string> {
  const { key, apiKey } = await createApiKey(server.db.orm.em.fork(), { name: 'expiring', permissions: ['admin'] });
  await server.sql(`update api_key set expires_at = now() + $2::interval where id = $1`, [apiKey.id, offset]);
  return key;
}

describe('API-key expiry follows the database clock', () => {
  it("accepts a key the database says is valid, even when this process's clock runs an hour ahead", async () => {
    const key = await keyExpiringIn('10 minutes');
    const caller = await createAuthenticator().authenticate(server.db.orm.em.fork(), key, Date.now() + HOUR);
    expect(caller?.permissions).toEqual(['admin']);
  });

  it("refuses a key the database says has expired, even when this process's clock runs an hour behind", async () => {
    const key = await keyExpiringIn('-1 second');
    expect(await createAuthenticator().authenticate(server.db.orm.em.fork(), key, Date.now() - HOUR)).toBeNull();
  });

  it('counts a cached key down to its expiry and refuses it afterwards', async () => {
    const key = await keyExpiringIn('2 seconds');
    const authenticator = createAuthenticator({ ttlMs: 60_000 });
    const now = Date.now();
    expect(await authenticator.authenticate(server.db.orm.em.fork(), key, now)).not.toBeNull();
    expect(await authenticator.authenticate(server.db.orm.em.fork(), key, now + 5_000)).toBeNull();
  });
});

describe('the Authorization header', () => {
  it.each([
    ['the bare key', (key: string) => key],
    ['another scheme', (key: string) => `Token ${key}`],
  ])('answers 401 with a hint to send "Bearer <key>" for %s', async (_name, header) => {
    const res = await fetch(server.graphqlUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: header(server.apiKey) },
      body: JSON.stringify({ query: '{ requestTokens { totalCount } }' }),
    });
    const body = (await res.json()) as any;
    expect(res.status).toBe(401);
    expect(body.errors[0].extensions.code).toBe('UNAUTHENTICATED');
    expect(body.errors[0].message).toMatch(/Bearer <api key>/);
  });

  it('keeps the plain "invalid" answer for a well-formed Bearer header with a wrong key', async () => {
    const res = await server.gql('{ requestTokens { totalCount } }', {}, 'rt_AAAAAAAAAAAA_' + 'B'.repeat(43));
    expect(res.status).toBe(401);
    expect(res.errors?.[0].message).toBe('Invalid, expired or revoked API key.');
  });
});
