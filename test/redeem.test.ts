import { SignJWT, decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, TEST_SECRET, type TestServer } from './support/harness.js';
import { issue, RECORD, redeem, tokenState } from './support/operations.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());

const future = (minutes: number) => new Date(Date.now() + minutes * 60_000).toISOString();
const visitor = { clientIp: '203.0.113.9', userAgent: 'Mozilla/5.0 (test)' };

/** Redeems and expects a refusal with `code`; proves that no use was consumed and that the attempt was logged. */
async function expectRefused(tokenId: string | null, input: Record<string, unknown>, code: string) {
  const before = tokenId ? await tokenState(server, tokenId) : null;
  const result = await redeem(server, { ...visitor, ...input });
  expect(result.__typename, JSON.stringify(result)).toBe('TokenRejectedError');
  expect(result.code).toBe(code);
  // Refusals that no token can be tied to are logged by the batched writer (server/domain/refusal-log.ts), which
  // gives the row its id when it writes it: the response carries no logId, the newest such row is this attempt's.
  await server.services.refusalLog.flush();
  const [log] =
    result.logId === null
      ? await server.sql('select * from request_token_log where error_code = $1 order by id desc limit 1', [code])
      : await server.sql('select * from request_token_log where id = $1', [result.logId]);
  expect(log).toMatchObject({ error_code: code, client_ip: visitor.clientIp, user_agent: visitor.userAgent });
  if (tokenId) {
    const after = await tokenState(server, tokenId);
    expect(after.usedToDate).toBe(before!.usedToDate);
    expect(after.logs.length).toBe(before!.logs.length + 1);
    expect(result.tokenId).toBe(tokenId);
  }
  return result;
}

describe('redeemRequestToken', () => {
  it('redeems once, returns the Redemption, counts the use and logs it', async () => {
    const { jwt, token } = await issue(server, {
      scope: 'unsubscribe',
      userId: '42',
      loginMode: 'REQUEST',
      maxUses: 2,
      data: { list: 'weekly' },
    });
    const result = await redeem(server, { jwt, scope: 'unsubscribe', userId: '42', ...visitor });
    expect(result).toMatchObject({
      __typename: 'Redemption',
      loginMode: 'REQUEST',
      authenticateAs: '42',
      data: { list: 'weekly' },
      usesRemaining: 1,
      token: { id: token.id, usedToDate: 1, status: 'ACTIVE' },
    });
    const state = await tokenState(server, token.id);
    expect(state.usedToDate).toBe(1);
    expect(state.logs).toHaveLength(1);
    expect(state.logs[0]).toMatchObject({
      id: result.id,
      error_code: null,
      user_id: '42',
      client_ip: '203.0.113.9',
      user_agent: 'Mozilla/5.0 (test)',
      status_code: null,
    });
  });

  it('does not identify a user for LoginMode.NONE', async () => {
    const { jwt } = await issue(server, { scope: 'rsvp', userId: '9' });
    const result = await redeem(server, { jwt, scope: 'rsvp' });
    expect(result.authenticateAs).toBeNull();
  });

  it('refuses a second use of a single-use token with MAX_USES_EXCEEDED', async () => {
    const { jwt, token } = await issue(server, { scope: 'rsvp' });
    expect((await redeem(server, { jwt, scope: 'rsvp' })).__typename).toBe('Redemption');
    await expectRefused(token.id, { jwt, scope: 'rsvp' }, 'MAX_USES_EXCEEDED');
    const state = await tokenState(server, token.id);
    expect(state.logs.map((l) => l.error_code)).toEqual([null, 'MAX_USES_EXCEEDED']);
  });

  describe('refusals, each consuming nothing', () => {
    it('TOKEN_MALFORMED for something that is not a JWT', async () => {
      await expectRefused(null, { jwt: 'not-a-jwt', scope: 's' }, 'TOKEN_MALFORMED');
      await expectRefused(null, { jwt: 'a.b', scope: 's' }, 'TOKEN_MALFORMED');
      await expectRefused(null, { jwt: 'a.b.c.d.e', scope: 's' }, 'TOKEN_MALFORMED');
    });

    it('TOKEN_SIGNATURE_INVALID for a token signed with another secret', async () => {
      const { jwt, token } = await issue(server, { scope: 's' });
      const forged = await new SignJWT(decodeJwt(jwt))
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .sign(new TextEncoder().encode('another-secret-another-secret-another-secret'));
      const result = await expectRefused(null, { jwt: forged, scope: 's' }, 'TOKEN_SIGNATURE_INVALID');
      expect(result.tokenId).toBeNull();
      expect((await tokenState(server, token.id)).usedToDate).toBe(0);
    });

    it('TOKEN_SIGNATURE_INVALID for alg none and for a tampered payload', async () => {
      const { jwt, token } = await issue(server, { scope: 's' });
      const [header, payload, signature] = jwt.split('.');
      const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${payload}.`;
      await expectRefused(null, { jwt: none, scope: 's' }, 'TOKEN_SIGNATURE_INVALID');
      const claims = { ...decodeJwt(jwt), max: 1000 };
      const tampered = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${signature}`;
      await expectRefused(null, { jwt: tampered, scope: 's' }, 'TOKEN_SIGNATURE_INVALID');
      expect((await tokenState(server, token.id)).usedToDate).toBe(0);
    });

    it('TOKEN_SIGNATURE_INVALID for a signature in a non-canonical encoding of the right bytes', async () => {
      const { jwt, token } = await issue(server, { scope: 's' });
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      // The last of 43 characters carries 4 bits and 2 unused ones: flipping an unused bit keeps the decoded bytes.
      const last = jwt[jwt.length - 1];
      const twin = alphabet[alphabet.indexOf(last) ^ 1];
      const variant = jwt.slice(0, -1) + twin;
      expect(Buffer.from(variant.split('.')[2], 'base64url')).toEqual(Buffer.from(jwt.split('.')[2], 'base64url'));
      await expectRefused(null, { jwt: variant, scope: 's' }, 'TOKEN_SIGNATURE_INVALID');
      expect((await tokenState(server, token.id)).usedToDate).toBe(0);
    });

    it('TOKEN_NOT_FOUND for a well-signed token that is not stored', async () => {
      const ghost = await new SignJWT({ jti: '999999999', sub: 's', mod: 'n', max: 1 })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setIssuedAt()
        .sign(new TextEncoder().encode(TEST_SECRET));
      const result = await expectRefused(null, { jwt: ghost, scope: 's' }, 'TOKEN_NOT_FOUND');
      expect(result.tokenId).toBeNull();
    });

    it('TOKEN_REVOKED once revoked', async () => {
      const { jwt, token } = await issue(server, { scope: 's', maxUses: 5 });
      const res = await server.gql(`mutation($id: ID!) { revokeRequestToken(id: $id) {
        __typename ... on RevokeRequestTokenSuccess { token { status revokedAt } } } }`, { id: token.id });
      expect(res.data.revokeRequestToken.token.status).toBe('REVOKED');
      await expectRefused(token.id, { jwt, scope: 's' }, 'TOKEN_REVOKED');
    });

    it('TOKEN_NOT_YET_VALID before notBefore', async () => {
      const { jwt, token } = await issue(server, { scope: 's', notBefore: future(5) });
      await expectRefused(token.id, { jwt, scope: 's' }, 'TOKEN_NOT_YET_VALID');
    });

    it('TOKEN_EXPIRED after expiresAt', async () => {
      const { jwt, token } = await issue(server, { scope: 's', expiresAt: future(5) });
      await server.sql(`update request_token set expires_at = now() - interval '1 second' where id = $1`, [token.id]);
      await expectRefused(token.id, { jwt, scope: 's' }, 'TOKEN_EXPIRED');
    });

    it('SCOPE_MISMATCH for another scope', async () => {
      const { jwt, token } = await issue(server, { scope: 'unsubscribe' });
      await expectRefused(token.id, { jwt, scope: 'rsvp' }, 'SCOPE_MISMATCH');
    });

    it('AUDIENCE_MISMATCH when another user is signed in', async () => {
      const { jwt, token } = await issue(server, { scope: 's', userId: '42', loginMode: 'REQUEST' });
      await expectRefused(token.id, { jwt, scope: 's', userId: '43' }, 'AUDIENCE_MISMATCH');
      expect((await redeem(server, { jwt, scope: 's', userId: '42' })).__typename).toBe('Redemption');
    });

    it('checks in the documented order: revoked before expired before scope', async () => {
      const { jwt, token } = await issue(server, { scope: 'a', expiresAt: future(5), userId: '1' });
      await server.sql(
        `update request_token set expires_at = now() - interval '1 second', revoked_at = now() where id = $1`,
        [token.id],
      );
      await expectRefused(token.id, { jwt, scope: 'b', userId: '2' }, 'TOKEN_REVOKED');
      await server.sql('update request_token set revoked_at = null where id = $1', [token.id]);
      await expectRefused(token.id, { jwt, scope: 'b', userId: '2' }, 'TOKEN_EXPIRED');
      await server.sql(`update request_token set expires_at = null where id = $1`, [token.id]);
      await expectRefused(token.id, { jwt, scope: 'b', userId: '2' }, 'SCOPE_MISMATCH');
      await expectRefused(token.id, { jwt, scope: 'a', userId: '2' }, 'AUDIENCE_MISMATCH');
    });
  });

  describe('target URL binding', () => {
    const target = 'https://news.example/unsubscribe?list=weekly&lang=en';

    it.each([
      ['the same URL', target],
      ['another scheme', 'http://news.example/unsubscribe?list=weekly&lang=en'],
      ['extra utm parameters and the rt parameter', `${target}&utm_source=mail&rt=whatever`],
      ['parameters in another order', 'https://news.example/unsubscribe?lang=en&list=weekly'],
      ['an upper-case host', 'https://NEWS.example/unsubscribe?list=weekly&lang=en'],
    ])('accepts %s', async (_name, url) => {
      const { jwt } = await issue(server, { scope: 'u', targetUrl: target });
      expect((await redeem(server, { jwt, scope: 'u', url })).__typename).toBe('Redemption');
    });

    it.each([
      ['another host', 'https://evil.example/unsubscribe?list=weekly&lang=en'],
      ['another path', 'https://news.example/other?list=weekly&lang=en'],
      ['a missing target parameter', 'https://news.example/unsubscribe?list=weekly'],
      ['another parameter value', 'https://news.example/unsubscribe?list=daily&lang=en'],
      ['another port', 'https://news.example:8443/unsubscribe?list=weekly&lang=en'],
    ])('refuses %s with TARGET_URL_MISMATCH', async (_name, url) => {
      const { jwt, token } = await issue(server, { scope: 'u', targetUrl: target });
      await expectRefused(token.id, { jwt, scope: 'u', url }, 'TARGET_URL_MISMATCH');
    });

    it('refuses a redemption without url for a token bound to a URL', async () => {
      const { jwt, token } = await issue(server, { scope: 'u', targetUrl: target });
      await expectRefused(token.id, { jwt, scope: 'u' }, 'TARGET_URL_MISMATCH');
    });
  });

  describe('bad input', () => {
    it.each([
      ['an empty jwt', { jwt: '', scope: 's' }, 'jwt'],
      ['an empty scope', { scope: '' }, 'scope'],
      ['a relative url', { scope: 's', url: '/x' }, 'url'],
      ['a client IP that is not one', { scope: 's', clientIp: 'localhost' }, 'clientIp'],
      ['a NUL byte in the user id', { scope: 's', userId: 'a\u0000' }, 'userId'],
    ])('answers %s with a ValidationError and consumes nothing', async (_name, input, field) => {
      const { jwt, token } = await issue(server, { scope: 's' });
      const result = await redeem(server, { jwt, ...input });
      expect(result.__typename).toBe('ValidationError');
      expect(result.issues.map((i: { path: string[] }) => i.path)).toContainEqual(['input', field]);
      const state = await tokenState(server, token.id);
      expect(state.usedToDate).toBe(0);
      expect(state.logs).toHaveLength(0);
    });

    it('cuts an over-long user agent instead of refusing', async () => {
      const { jwt, token } = await issue(server, { scope: 's' });
      const result = await redeem(server, { jwt, scope: 's', userAgent: 'A'.repeat(5000) });
      expect(result.__typename).toBe('Redemption');
      const [log] = (await tokenState(server, token.id)).logs;
      expect(log.user_agent).toHaveLength(512);
    });
  });
});

describe('recordResponseStatus', () => {
  it("stores the client application's status on the redemption's log row", async () => {
    const { jwt, token } = await issue(server, { scope: 's' });
    const redemption = await redeem(server, { jwt, scope: 's' });
    const res = await server.gql(RECORD, { input: { redemptionId: redemption.id, statusCode: 200 } });
    expect(res.data.recordResponseStatus).toEqual({
      __typename: 'RecordResponseStatusSuccess',
      log: { id: redemption.id, statusCode: 200, errorCode: null },
    });
    expect((await tokenState(server, token.id)).logs[0].status_code).toBe(200);
  });

  it('records the status of a refusal page on its log row', async () => {
    const { jwt } = await issue(server, { scope: 's' });
    const refused = await redeem(server, { jwt, scope: 'other' });
    const res = await server.gql(RECORD, { input: { redemptionId: refused.logId, statusCode: 403 } });
    expect(res.data.recordResponseStatus.log).toMatchObject({ statusCode: 403, errorCode: 'SCOPE_MISMATCH' });
  });

  it('gives no logId for a refusal that no token can be tied to (its row is written in a batch)', async () => {
    const refused = await redeem(server, { jwt: 'garbage', scope: 's' });
    expect(refused).toMatchObject({ code: 'TOKEN_MALFORMED', tokenId: null, logId: null });
  });

  it('answers NotFoundError for an unknown redemption', async () => {
    for (const id of ['987654321', 'abc']) {
      const res = await server.gql(RECORD, { input: { redemptionId: id, statusCode: 200 } });
      expect(res.data.recordResponseStatus).toMatchObject({ __typename: 'NotFoundError', code: 'NOT_FOUND' });
    }
  });

  it('answers ValidationError for a status that is not an HTTP status', async () => {
    const { jwt, token } = await issue(server, { scope: 's' });
    const redemption = await redeem(server, { jwt, scope: 's' });
    for (const statusCode of [0, 99, 600]) {
      const res = await server.gql(RECORD, { input: { redemptionId: redemption.id, statusCode } });
      expect(res.data.recordResponseStatus.__typename).toBe('ValidationError');
    }
    expect((await tokenState(server, token.id)).logs[0].status_code).toBeNull();
  });
});
