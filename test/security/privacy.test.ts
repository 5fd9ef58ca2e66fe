import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CREATE, REDEEM } from '../support/operations.js';
import { startTestServer, type TestServer } from '../support/harness.js';
import { storedClientIp } from '../../server/domain/privacy.js';

async function issueAndRedeem(server: TestServer, input: Record<string, unknown>, redeemExtra: Record<string, unknown> = {}) {
  const created = await server.gql(CREATE, { input: { scope: 's', maxUses: 5, ...input } });
  const { jwt, token } = created.data.createRequestToken;
  const res = await server.gql(REDEEM, { input: { jwt, scope: 's', ...redeemExtra } });
  return { id: token.id as string, logId: res.data.redeemRequestToken.id as string };
}

describe('client IP storage', () => {
  it.each([
    ['203.0.113.9', '203.0.113.0'],
    ['2001:db8:abcd:12::1', '2001:db8:abcd::'],
    ['2001:0db8:00ab:0012:0000:0000:0000:0001', '2001:db8:ab::'],
    ['::1', '0:0:0::'],
    ['::ffff:198.51.100.7', '::ffff:198.51.100.0'],
  ])('truncates %s to %s', (ip, stored) => {
    expect(storedClientIp(ip, { clientIpStorage: 'truncated', clientIpHashSalt: null })).toBe(stored);
  });

  it('hashes with the salt: stable per address, not the address', () => {
    const config = { clientIpStorage: 'hashed' as const, clientIpHashSalt: 'salt-salt-salt-salt' };
    const a = storedClientIp('203.0.113.9', config);
    expect(a).toMatch(/^h:[0-9a-f]{40}$/);
    expect(storedClientIp('203.0.113.9', config)).toBe(a);
    expect(storedClientIp('203.0.113.10', config)).not.toBe(a);
    expect(storedClientIp('203.0.113.9', { ...config, clientIpHashSalt: 'other-salt-other-salt' })).not.toBe(a);
  });

  it('stores truncated addresses when CLIENT_IP_STORAGE=truncated', async () => {
    const server = await startTestServer({ CLIENT_IP_STORAGE: 'truncated' });
    try {
      const { logId } = await issueAndRedeem(server, {}, { clientIp: '203.0.113.9' });
      const [row] = await server.sql('select client_ip from request_token_log where id = $1', [logId]);
      expect(row.client_ip).toBe('203.0.113.0');
    } finally {
      await server.close();
    }
  });

  it('refuses CLIENT_IP_STORAGE=hashed without a salt at start-up', async () => {
    const { loadConfig } = await import('../../server/config.js');
    expect(() => loadConfig({ CLIENT_IP_STORAGE: 'hashed' })).toThrow(/CLIENT_IP_HASH_SALT/);
  });
});

const COUNTS = `select (select count(*)::int from request_token_log) as logs,
  (select sum(used_to_date)::int from request_token) as used`;

describe('forgetUser', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server?.close());

  it("revokes the user's tokens and anonymises their log rows, keeping the counts", async () => {
    const a = await issueAndRedeem(server, { userId: 'alice', data: { email: 'alice@example.com' } }, { clientIp: '203.0.113.9', userAgent: 'UA' });
    const b = await issueAndRedeem(server, { userId: 'alice' }, { userId: 'alice', clientIp: '203.0.113.9' });
    const other = await issueAndRedeem(server, { userId: 'bob' }, { clientIp: '198.51.100.1', userAgent: 'UA' });
    const countsBefore = await server.sql(COUNTS);

    const res = await server.gql('mutation { forgetUser(userId: "alice") { ... on ForgetUserSuccess { revokedTokens anonymisedLogs } } }');
    expect(res.data.forgetUser).toEqual({ revokedTokens: 2, anonymisedLogs: 2 });

    const tokens = await server.sql('select id, user_id, data, revoked_at from request_token where id = any($1::bigint[])', [[a.id, b.id]]);
    for (const t of tokens) expect(t).toMatchObject({ user_id: null, data: null, revoked_at: expect.any(Date) });
    const logs = await server.sql('select user_id, client_ip, user_agent from request_token_log where id = any($1::bigint[])', [[a.logId, b.logId]]);
    for (const l of logs) expect(l).toEqual({ user_id: null, client_ip: null, user_agent: null });
    const [bob] = await server.sql('select client_ip, user_agent from request_token_log where id = $1', [other.logId]);
    expect(bob).toEqual({ client_ip: '198.51.100.1', user_agent: 'UA' });
    const [bobToken] = await server.sql('select user_id, revoked_at from request_token where id = $1', [other.id]);
    expect(bobToken).toEqual({ user_id: 'bob', revoked_at: null });
    expect(await server.sql(COUNTS)).toEqual(countsBefore);
  });

  it('refuses an empty user id as a validation error', async () => {
    const res = await server.gql('mutation { forgetUser(userId: "") { __typename } }');
    expect(res.data.forgetUser.__typename).toBe('ValidationError');
  });
});
