import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenise } from '../sdk/index.js';
import { createJwtCodec } from '../server/domain/jwt.js';
import { startTestServer, TEST_SECRET, type TestServer } from './support/harness.js';
import { runCli } from './support/django.js';

/** Where django-request-token's own tests expected something else, and a migrating user would trip over it. */

describe('tokenise, as django-request-token’s tokenise is used', () => {
  it('accepts a path and keeps its query as written', () => {
    expect(tokenise('/foo?bar=baz', 'h.p.s')).toBe('/foo?bar=baz&rt=h.p.s');
    expect(tokenise('/foo', 'h.p.s')).toBe('/foo?rt=h.p.s');
    expect(tokenise('foo/bar?x=1#frag', 'j')).toBe('foo/bar?x=1&rt=j#frag');
  });

  it('keeps blank parameters as they were', () => {
    expect(tokenise('/foo?a=&b&c=1', 'j')).toBe('/foo?a=&b&c=1&rt=j');
    expect(tokenise('https://a.example/u?empty=&flag', 'j')).toBe('https://a.example/u?empty=&flag&rt=j');
    expect(tokenise('/foo?', 'j')).toBe('/foo?rt=j');
    expect(tokenise('/foo?a=1&', 'j')).toBe('/foo?a=1&rt=j');
  });

  it('leaves the host’s case and the rest of the URL alone', () => {
    expect(tokenise('https://WWW.Example.COM/Path?Q=V', 'j')).toBe('https://WWW.Example.COM/Path?Q=V&rt=j');
    expect(tokenise('HTTPS://Example.com', 'j')).toBe('HTTPS://Example.com?rt=j');
  });

  it('replaces a token already there (the first in place, others dropped) and encodes what it adds', () => {
    expect(tokenise('/u?rt=old&x=1&rt=older', 'new')).toBe('/u?rt=new&x=1');
    expect(tokenise('/u?x=1', 'a b', { param: 'my token' })).toBe('/u?x=1&my%20token=a%20b');
    expect(tokenise('/u?my+token=old', 'new', { param: 'my token' })).toBe('/u?my%20token=new');
  });
});

describe('a JWT whose jti is a JSON number (django-request-token up to 2.3.x)', () => {
  const sign = (claims: Record<string, unknown>) =>
    new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(new TextEncoder().encode(TEST_SECRET));
  const claims = { max: 1, sub: 'scope', mod: 'n', iat: 1_700_000_000 };

  it('verifies, with the id as its decimal string (and a numeric aud as a string)', async () => {
    const codec = await createJwtCodec(TEST_SECRET);
    expect(await codec.verify(await sign({ ...claims, jti: 123, aud: 42 }))).toMatchObject({
      ok: true,
      claims: { jti: '123', aud: '42' },
      kid: 'default',
    });
    expect(await codec.verify(await sign({ ...claims, jti: '123' }))).toMatchObject({ ok: true, claims: { jti: '123' } });
  });

  it.each([
    ['a fraction', 1.5],
    ['a negative number', -1],
    ['beyond the safe integers', 2 ** 53],
    ['an exponent too large', 1e300],
    ['a boolean', true],
    ['null', null],
    ['an object', { id: 1 }],
  ])('is still malformed when it is %s', async (_what, jti) => {
    const codec = await createJwtCodec(TEST_SECRET);
    expect(await codec.verify(await sign({ ...claims, jti }))).toEqual({ ok: false, code: 'TOKEN_MALFORMED' });
  });
});

describe('log retention: 0 is refused, emptying the log takes all', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server?.close());

  const TRUNCATE = /* GraphQL */ `
    mutation Truncate($maxCount: Int, $maxDays: Int, $all: Boolean) {
      truncateRequestTokenLogs(maxCount: $maxCount, maxDays: $maxDays, all: $all) {
        __typename
        ... on TruncateRequestTokenLogsSuccess { deletedCount }
        ... on ValidationError { code issues { path message } }
      }
    }
  `;
  const fill = () =>
    server.sql(`insert into request_token_log (token_id, error_code, timestamp)
      select 0, 'TOKEN_MALFORMED', now() - make_interval(days => i) from generate_series(1, 12) i`);
  const rows = async () => (await server.sql('select count(*)::int as n from request_token_log'))[0].n as number;

  it('refuses maxCount 0 and maxDays 0 in the mutation with a clear message, and deletes nothing', async () => {
    await fill();
    const before = await rows();
    for (const variables of [{ maxCount: 0 }, { maxDays: 0 }, { maxCount: 0, maxDays: 30 }]) {
      const res = await server.gql(TRUNCATE, variables);
      const result = res.data.truncateRequestTokenLogs;
      expect(result).toMatchObject({ __typename: 'ValidationError', code: 'VALIDATION_FAILED' });
      expect(result.issues[0].message).toContain('0 would delete every row');
      expect(result.issues[0].message).toContain('use all');
    }
    expect((await server.gql(TRUNCATE, { all: true, maxDays: 3 })).data.truncateRequestTokenLogs.issues).toEqual([
      { path: ['all'], message: 'deletes every row: give it without maxCount and maxDays' },
    ]);
    expect(await rows()).toBe(before);
  });

  it('deletes every row with all: true', async () => {
    const res = await server.gql(TRUNCATE, { all: true });
    expect(res.data.truncateRequestTokenLogs).toEqual({ __typename: 'TruncateRequestTokenLogsSuccess', deletedCount: 12 });
    expect(await rows()).toBe(0);
  });

  it('refuses --max-count 0 and --max-days 0 on the command line too; --all empties the log', async () => {
    await fill();
    const env = { DATABASE_URL: server.databaseUrl, REQUEST_TOKEN_SECRET: TEST_SECRET };
    for (const args of [['--max-count', '0', '--dry-run'], ['--max-days', '0']]) {
      const run = await runCli(['logs', 'truncate', ...args], env);
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(/^--max-(count|days): must be at least 1: 0 would delete every row .*use --all$/m);
    }
    expect(await rows()).toBe(12);
    const dry = await runCli(['logs', 'truncate', '--all', '--dry-run'], env);
    expect(dry.stdout).toMatch(/^all log rows \(ids up to \d+\): 12 /m);
    expect(dry.stdout).toContain('dry run: would delete 12 log rows');
    expect(await rows()).toBe(12);
    const both = await runCli(['logs', 'truncate', '--all', '--max-days', '3'], env);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--all: deletes every row: give it without --max-count and --max-days');
    const all = await runCli(['logs', 'truncate', '--all'], env);
    expect(all.stdout).toContain('deleted 12 log rows in total');
    expect(await rows()).toBe(0);
  });
});
