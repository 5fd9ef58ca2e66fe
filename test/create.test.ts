import { decodeJwt, decodeProtectedHeader } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './support/harness.js';
import { CREATE, issue } from './support/operations.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());

const future = (minutes: number) => new Date(Date.now() + minutes * 60_000).toISOString();

async function validationIssues(input: Record<string, unknown>) {
  const res = await server.gql(CREATE, { input });
  const result = res.data?.createRequestToken;
  expect(result?.__typename, JSON.stringify(res)).toBe('ValidationError');
  expect(result.code).toBe('VALIDATION_FAILED');
  return result.issues as { path: string[]; message: string }[];
}

describe('createRequestToken', () => {
  it('issues a token with the defaults and returns its JWT', async () => {
    const { jwt, url, token } = await issue(server, { scope: 'rsvp' });
    expect(url).toBeNull();
    expect(token).toMatchObject({
      scope: 'rsvp',
      loginMode: 'NONE',
      maxUses: 1,
      usedToDate: 0,
      status: 'ACTIVE',
      userId: null,
      expiresAt: null,
      notBefore: null,
      revokedAt: null,
      data: null,
    });
    expect(token.jwt).toBe(jwt);
  });

  it('lays out the claims as django-request-token does, without the data payload', async () => {
    const expiresAt = future(60);
    const notBefore = future(1);
    const { jwt, token } = await issue(server, {
      scope: 'unsubscribe',
      userId: '42',
      loginMode: 'REQUEST',
      maxUses: 3,
      expiresAt,
      notBefore,
      data: { secret: 'server-side only' },
    });
    expect(decodeProtectedHeader(jwt)).toEqual({ alg: 'HS256', typ: 'JWT', kid: 'default' });
    const claims = decodeJwt(jwt);
    expect(claims).toEqual({
      jti: token.id,
      sub: 'unsubscribe',
      mod: 'r',
      max: 3,
      aud: '42',
      iat: Math.floor(Date.parse(token.issuedAt) / 1000),
      exp: Math.floor(Date.parse(expiresAt) / 1000),
      nbf: Math.floor(Date.parse(notBefore) / 1000),
    });
    expect(JSON.stringify(claims)).not.toContain('server-side only');
  });

  it('adds the JWT to the target URL as rt, keeping its parameters and fragment', async () => {
    const { jwt, url } = await issue(server, { scope: 'rsvp', targetUrl: 'https://app.example/rsvp?event=7&lang=fr#top' });
    const parsed = new URL(url!);
    expect(parsed.searchParams.get('event')).toBe('7');
    expect(parsed.searchParams.get('lang')).toBe('fr');
    expect(parsed.searchParams.get('rt')).toBe(jwt);
    expect(parsed.hash).toBe('#top');
  });

  it('gives SESSION tokens the configured expiry when none is given', async () => {
    const before = Date.now();
    const { token } = await issue(server, { scope: 'login', userId: '7', loginMode: 'SESSION' });
    const expires = Date.parse(token.expiresAt);
    const issued = Date.parse(token.issuedAt);
    expect(expires - issued).toBe(10 * 60_000);
    expect(expires).toBeGreaterThan(before);
  });

  it('keeps an explicit expiry for SESSION tokens', async () => {
    const expiresAt = future(3);
    const { token } = await issue(server, { scope: 'login', userId: '7', loginMode: 'SESSION', expiresAt });
    expect(token.expiresAt).toBe(expiresAt);
  });

  it('stores the data payload server-side', async () => {
    const { token } = await issue(server, { scope: 'rsvp', data: { event: 7, answer: 'yes' } });
    expect(token.data).toEqual({ event: 7, answer: 'yes' });
  });

  describe('refuses invalid input with a ValidationError naming each field, and stores nothing', () => {
    it.each([
      ['an empty scope', { scope: '' }, ['input', 'scope']],
      ['a scope over 100 characters', { scope: 'x'.repeat(101) }, ['input', 'scope']],
      ['maxUses of 0', { scope: 's', maxUses: 0 }, ['input', 'maxUses']],
      ['negative maxUses', { scope: 's', maxUses: -5 }, ['input', 'maxUses']],
      ['REQUEST without a userId', { scope: 's', loginMode: 'REQUEST' }, ['input', 'userId']],
      ['SESSION without a userId', { scope: 's', loginMode: 'SESSION' }, ['input', 'userId']],
      ['notBefore after expiresAt', { scope: 's', notBefore: future(20), expiresAt: future(10) }, ['input', 'notBefore']],
      ['notBefore equal to expiresAt', { scope: 's', notBefore: future(10), expiresAt: future(10) }, ['input', 'notBefore']],
      ['an expiry in the past', { scope: 's', expiresAt: new Date(Date.now() - 1000).toISOString() }, ['input', 'expiresAt']],
      ['a relative targetUrl', { scope: 's', targetUrl: '/unsubscribe' }, ['input', 'targetUrl']],
      ['a javascript: targetUrl', { scope: 's', targetUrl: 'javascript:alert(1)' }, ['input', 'targetUrl']],
      ['an ftp targetUrl', { scope: 's', targetUrl: 'ftp://files.example/x' }, ['input', 'targetUrl']],
      ['a targetUrl with credentials', { scope: 's', targetUrl: 'https://ok.example@evil.example/' }, ['input', 'targetUrl']],
      ['data that is not an object', { scope: 's', data: [1, 2] }, ['input', 'data']],
      ['data that is a string', { scope: 's', data: 'text' }, ['input', 'data']],
      ['data over 16 KiB', { scope: 's', data: { blob: 'x'.repeat(16 * 1024) } }, ['input', 'data']],
      ['a NUL byte in the scope', { scope: 'a\u0000b' }, ['input', 'scope']],
    ])('%s', async (_name, input, path) => {
      const [{ n: before }] = await server.sql('select count(*)::int as n from request_token');
      const issues = await validationIssues(input);
      expect(issues.map((i) => i.path)).toContainEqual(path);
      const [{ n: after }] = await server.sql('select count(*)::int as n from request_token');
      expect(after).toBe(before);
    });

    it('lists every offending field at once', async () => {
      const issues = await validationIssues({ scope: '', maxUses: 0, loginMode: 'SESSION', targetUrl: 'nope' });
      expect(issues.map((i) => i.path.join('.')).sort()).toEqual(
        ['input.maxUses', 'input.scope', 'input.targetUrl', 'input.userId'].sort(),
      );
    });
  });

  it('accepts data of exactly 16 KiB', async () => {
    const padding = 16 * 1024 - JSON.stringify({ blob: '' }).length;
    const { token } = await issue(server, { scope: 's', data: { blob: 'x'.repeat(padding) } });
    expect(token.data.blob).toHaveLength(padding);
  });

  it('uses DEFAULT_MAX_USES when maxUses is omitted', async () => {
    const other = await startTestServer({ DEFAULT_MAX_USES: '5' });
    try {
      const { token } = await issue(other, { scope: 's' });
      expect(token.maxUses).toBe(5);
    } finally {
      await other.close();
    }
  });
});
