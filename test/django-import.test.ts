import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { decodeProtectedHeader, jwtVerify, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importDjango } from '../cli/django-import.js';
import { createTestDatabase, startTestServer, TEST_SECRET, type TestServer } from './support/harness.js';
import { issue, redeem } from './support/operations.js';
import {
  DJANGO_SECRET_KEY,
  djangoJwt,
  djangoTablesSql,
  insertDjangoTokens,
  runCli,
  type DjangoToken,
} from './support/django.js';

const HOUR = 3_600_000;
const now = Date.now();
const at = (offset: number) => new Date(now + offset);

const base = { user_id: null, expiration_time: null, not_before_time: null, data: {}, issued_at: at(-24 * HOUR), used_to_date: 0 };
/** One of each kind the Django package leaves behind. */
const tokens = {
  newsletter: { ...base, id: 101, login_mode: 'None', scope: 'newsletter', max_uses: 5, used_to_date: 2, data: { list: 'weekly' }, expiration_time: at(24 * HOUR) },
  request: { ...base, id: 102, login_mode: 'Request', user_id: 42, scope: 'profile', max_uses: 10 },
  session: { ...base, id: 103, login_mode: 'Session', user_id: 7, scope: 'login', max_uses: 1, expiration_time: at(HOUR) },
  expired: { ...base, id: 104, login_mode: 'None', scope: 'newsletter', max_uses: 5, expiration_time: at(-HOUR) },
  exhausted: { ...base, id: 105, login_mode: 'None', scope: 'newsletter', max_uses: 3, used_to_date: 3 },
  notYetValid: { ...base, id: 106, login_mode: 'None', scope: 'newsletter', max_uses: 5, not_before_time: at(24 * HOUR) },
  noData: { ...base, id: 107, login_mode: 'None', user_id: 42, scope: 'survey', max_uses: 2, data: null },
} satisfies Record<string, DjangoToken>;

let server: TestServer;
let djangoUrl: string;
let django: pg.Client;
let cliEnv: Record<string, string>;

const count = async (table: string) => Number((await server.sql(`select count(*) from ${table}`))[0].count);

beforeAll(async () => {
  // The service runs with REQUEST_TOKEN_SECRET = Django's SECRET_KEY: the first of the two ways the guide offers.
  [server, djangoUrl] = await Promise.all([startTestServer({ REQUEST_TOKEN_SECRET: DJANGO_SECRET_KEY }), createTestDatabase()]);
  django = new pg.Client({ connectionString: djangoUrl });
  await django.connect();
  await django.query(djangoTablesSql('public'));
  await insertDjangoTokens(django, 'public', Object.values(tokens));
  await django.query(
    `insert into request_token_requesttokenlog (id, token_id, user_id, user_agent, client_ip, status_code, timestamp) values
       (1001, 101, null, 'Mozilla/5.0', '203.0.113.5', 200, '2025-01-02 03:04:05.123456+00'),
       (1002, 101, 42, '', '2001:db8::1', null, '2025-01-03 03:04:05+00'),
       (1003, 105, null, 'curl/8', null, 302, '2025-01-04 00:00:00+00'),
       (1004, 105, null, 'curl/8', '10.1.2.3', 200, '2025-01-04 00:00:01+00'),
       (1005, 105, null, 'curl/8', '10.1.2.3', 200, '2025-01-04 00:00:02+00')`,
  );
  cliEnv = { DATABASE_URL: server.databaseUrl, REQUEST_TOKEN_SECRET: DJANGO_SECRET_KEY };
});
afterAll(async () => {
  await django?.end();
  await server?.close();
});

describe('request-token import django', () => {
  it('imports every token and log row with ids kept, mapped one to one, and moves the id sequences past them', async () => {
    const run = await runCli(['import', 'django', '--from', djangoUrl, '--reserve-ids', '1000', '--batch-size', '3'], cliEnv);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain('tokens: 7/7 read');
    expect(run.stderr).toContain('imported 7 of 7 tokens (skipped 0 already imported)');
    expect(run.stderr).toContain('imported 5 of 5 log rows (skipped 0 already imported)');

    const rows = await server.sql(
      `select id::int, scope, user_id, login_mode, data, max_uses, used_to_date, issued_at, not_before, expires_at, client_id::int,
         kid, target_host from request_token order by id`,
    );
    expect(rows.map((r) => r.id)).toEqual([101, 102, 103, 104, 105, 106, 107]);
    expect(rows[0]).toEqual({
      id: 101, scope: 'newsletter', user_id: null, login_mode: 'NONE', data: { list: 'weekly' }, max_uses: 5, used_to_date: 2,
      issued_at: tokens.newsletter.issued_at, not_before: null, expires_at: tokens.newsletter.expiration_time, client_id: 1,
      kid: null, target_host: null,
    });
    expect(rows.map((r) => [r.login_mode, r.user_id, r.data])).toEqual([
      ['NONE', null, { list: 'weekly' }],
      ['REQUEST', '42', {}],
      ['SESSION', '7', {}],
      ['NONE', null, {}],
      ['NONE', null, {}],
      ['NONE', null, {}],
      ['NONE', '42', null],
    ]);
    expect(rows[5].not_before).toEqual(tokens.notYetValid.not_before_time);

    const logs = await server.sql(
      `select id::int, token_id::int, user_id, user_agent, client_ip, status_code, timestamp::text, error_code, client_id::int
       from request_token_log order by id`,
    );
    expect(logs[0]).toEqual({
      id: 1001, token_id: 101, user_id: null, user_agent: 'Mozilla/5.0', client_ip: '203.0.113.5', status_code: 200,
      timestamp: '2025-01-02 03:04:05.123456+00', error_code: null, client_id: 1,
    });
    expect(logs[1]).toMatchObject({ id: 1002, user_id: '42', user_agent: '', client_ip: '2001:db8::1', status_code: null });
    expect(logs.map((l) => l.id)).toEqual([1001, 1002, 1003, 1004, 1005]);

    // The service's own new rows come after the imported ids and the reserve.
    const fresh = await issue(server, { scope: 'newsletter' });
    expect(Number(fresh.token.id)).toBeGreaterThan(1107);
    await server.sql('delete from request_token where id = $1', [fresh.token.id]);
  });

  it('redeems each Django link as the Django package would decide, with the uses it has left', async () => {
    const link = (t: DjangoToken, opts?: { numericAud?: boolean }) => djangoJwt(t, DJANGO_SECRET_KEY, opts);

    const newsletter = await redeem(server, { jwt: await link(tokens.newsletter), scope: 'newsletter' });
    expect(newsletter).toMatchObject({
      __typename: 'Redemption', loginMode: 'NONE', authenticateAs: null, data: { list: 'weekly' }, usesRemaining: 2,
      token: { id: '101', usedToDate: 3 },
    });
    // Django 1.x wrote the user id in `aud` as a number.
    const request = await redeem(server, { jwt: await link(tokens.request, { numericAud: true }), scope: 'profile' });
    expect(request).toMatchObject({ __typename: 'Redemption', loginMode: 'REQUEST', authenticateAs: '42', usesRemaining: 9 });
    const otherUser = await redeem(server, { jwt: await link(tokens.request), scope: 'profile', userId: '43' });
    expect(otherUser).toMatchObject({ code: 'AUDIENCE_MISMATCH' });
    const sameUser = await redeem(server, { jwt: await link(tokens.request), scope: 'profile', userId: '42' });
    expect(sameUser).toMatchObject({ __typename: 'Redemption', usesRemaining: 8 });

    const session = await link(tokens.session);
    expect(await redeem(server, { jwt: session, scope: 'login' })).toMatchObject({
      __typename: 'Redemption', loginMode: 'SESSION', authenticateAs: '7', usesRemaining: 0,
    });
    expect(await redeem(server, { jwt: session, scope: 'login' })).toMatchObject({ code: 'MAX_USES_EXCEEDED' });

    expect(await redeem(server, { jwt: await link(tokens.expired), scope: 'newsletter' })).toMatchObject({ code: 'TOKEN_EXPIRED' });
    expect(await redeem(server, { jwt: await link(tokens.exhausted), scope: 'newsletter' })).toMatchObject({ code: 'MAX_USES_EXCEEDED' });
    expect(await redeem(server, { jwt: await link(tokens.notYetValid), scope: 'newsletter' })).toMatchObject({
      code: 'TOKEN_NOT_YET_VALID',
    });
    expect(await redeem(server, { jwt: await link(tokens.newsletter), scope: 'profile' })).toMatchObject({ code: 'SCOPE_MISMATCH' });
    // A deliberate difference (docs/migrating-from-django.md): Django let any user through on a None token naming one.
    expect(await redeem(server, { jwt: await link(tokens.noData), scope: 'survey', userId: '43' })).toMatchObject({
      code: 'AUDIENCE_MISMATCH',
    });
    expect(await redeem(server, { jwt: await link(tokens.noData), scope: 'survey' })).toMatchObject({
      __typename: 'Redemption', data: null, authenticateAs: null, usesRemaining: 1,
    });

    // A token Django never had, and a link signed with another SECRET_KEY.
    expect(await redeem(server, { jwt: await link({ ...tokens.newsletter, id: 999 }), scope: 'newsletter' })).toMatchObject({
      code: 'TOKEN_NOT_FOUND',
    });
    const forged = await djangoJwt(tokens.newsletter, 'another-secret-key-another-secret-key-0123456789');
    expect(await redeem(server, { jwt: forged, scope: 'newsletter' })).toMatchObject({ code: 'TOKEN_SIGNATURE_INVALID' });
    // A number that is no safe integer is no token id.
    const unsafe = await new SignJWT({ max: 5, sub: 'newsletter', mod: 'n', jti: 2 ** 53 as unknown as string, iat: 1 })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .sign(new TextEncoder().encode(DJANGO_SECRET_KEY));
    expect(await redeem(server, { jwt: unsafe, scope: 'newsletter' })).toMatchObject({ code: 'TOKEN_MALFORMED' });
  });

  it('imports nothing twice: a re-run takes only rows added since and brings forward uses Django counted meanwhile', async () => {
    // Refusals of unverifiable JWTs are logged off the request path (error_code set): only the other rows are counted.
    const uses = 'request_token_log where error_code is null';
    const before = { tokens: await count('request_token'), logs: await count(uses) };
    const added: DjangoToken = { ...base, id: 108, login_mode: 'None', scope: 'newsletter', max_uses: 1, issued_at: at(0) };
    await insertDjangoTokens(django, 'public', [added]);
    await django.query(
      `insert into request_token_requesttokenlog (id, token_id, user_id, user_agent, client_ip, status_code, timestamp)
       values (1006, 108, null, 'Mozilla/5.0', null, 200, now())`,
    );
    // Django redeemed the survey link twice more meanwhile (the service: once).
    await django.query('update request_token_requesttoken set used_to_date = 2 where id = 107');

    const run = await runCli(['import', 'django', '--from', djangoUrl], cliEnv);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain('imported 1 of 8 tokens (skipped 7 already imported, 1 with uses brought forward)');
    expect(run.stderr).toContain('imported 1 of 6 log rows (skipped 5 already imported)');
    expect(await count('request_token')).toBe(before.tokens + 1);
    // The service's own log rows (redemptions above) are kept; one Django row added.
    expect(await count(uses)).toBe(before.logs + 1);
    expect(await server.sql('select token_id::int from request_token_log where id = 1006')).toEqual([{ token_id: 108 }]);
    expect(await redeem(server, { jwt: await djangoJwt(tokens.noData), scope: 'survey' })).toMatchObject({ code: 'MAX_USES_EXCEEDED' });
    expect(await redeem(server, { jwt: await djangoJwt(added), scope: 'newsletter' })).toMatchObject({ __typename: 'Redemption' });

    const again = await runCli(['import', 'django', '--from', djangoUrl], cliEnv);
    expect(again.stderr).toContain('imported 0 of 8 tokens (skipped 8 already imported)');
    expect(again.stderr).toContain('imported 0 of 6 log rows (skipped 6 already imported)');
  });
});

describe('request-token import django into a service with rows of its own', () => {
  let other: TestServer;
  let env: Record<string, string>;
  beforeAll(async () => {
    other = await startTestServer({ REQUEST_TOKEN_SECRET: DJANGO_SECRET_KEY });
    env = { DATABASE_URL: other.databaseUrl, REQUEST_TOKEN_SECRET: DJANGO_SECRET_KEY };
  });
  afterAll(() => other?.close());
  const snapshot = async () =>
    (await other.sql(`select
      (select count(*)::int from request_token) as tokens,
      (select count(*)::int from request_token_log) as logs,
      (select last_value::int from request_token_id_seq) as token_seq`))[0];

  it('--dry-run counts and checks everything and writes nothing', async () => {
    const before = await snapshot();
    const run = await runCli(['import', 'django', '--from', djangoUrl, '--dry-run'], env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain('dry run: would import 8 of 8 tokens');
    expect(run.stderr).toContain('would import 6 of 6 log rows');
    expect(await snapshot()).toEqual(before);
  });

  it('reports an id taken by another token before writing anything, and writes nothing', async () => {
    await other.sql(
      `insert into request_token (id, scope, max_uses, client_id) values (104, 'not-django', 1, 1), (106, 'not-django', 1, 1)`,
    );
    const before = await snapshot();
    const run = await runCli(['import', 'django', '--from', djangoUrl], env);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('2 ids conflict with existing rows; nothing was written');
    expect(run.stderr).toContain('token id 104 is taken by another token');
    expect(run.stderr).toContain('token id 106 is taken by another token');
    expect(await snapshot()).toEqual(before);
  });

  it('refuses an unknown client and names the command that creates one', async () => {
    const run = await runCli(['import', 'django', '--from', djangoUrl, '--client', 'nobody'], env);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('no API client named "nobody"');
  });
});

describe('importing an early release’s layout (text data, target_url) from a schema', () => {
  it('parses text JSON data, binds target_url (paths against --target-origin) and imports into the given client', async () => {
    await django.query(djangoTablesSql('legacy', { legacy: true }));
    await insertDjangoTokens(django, 'legacy', [
      { ...base, id: 201, login_mode: 'None', scope: 'confirm', max_uses: 2, data: '{"legacy": true}', target_url: 'https://www.example.com/confirm?x=1' },
      { ...base, id: 202, login_mode: 'None', scope: 'confirm', max_uses: 2, data: '', target_url: '' },
      { ...base, id: 203, login_mode: 'None', scope: 'confirm', max_uses: 2, data: null, target_url: '/welcome' },
    ]);
    await django.query(
      `insert into legacy.request_token_requesttokenlog (id, token_id, user_id, user_agent, client_ip, status_code, timestamp)
       values (2001, 201, null, 'Opera', 'not an address', 200, now())`,
    );
    await server.sql(`insert into api_client (name) values ('legacy')`);
    const source = new pg.Client({ connectionString: djangoUrl });
    await source.connect();
    const options = { source, target: server.db.pool, schema: 'legacy', client: 'legacy', config: server.config };
    try {
      await expect(importDjango(options)).rejects.toMatchObject({
        problems: [expect.stringContaining('token 203: target_url "/welcome" is a path: give --target-origin')],
      });
      expect(await server.sql('select id from request_token where id between 201 and 203')).toEqual([]);
      const result = await importDjango({ ...options, targetOrigin: 'https://www.example.com' });
      expect(result.tokens).toMatchObject({ imported: 3, skipped: 0 });
      expect(result.logs).toMatchObject({ imported: 1, adjusted: 1 });
    } finally {
      await source.end();
    }
    const rows = await server.sql(
      `select id::int, data, target_url, target_host, target_path from request_token where id between 201 and 203 order by id`,
    );
    expect(rows).toEqual([
      { id: 201, data: { legacy: true }, target_url: 'https://www.example.com/confirm?x=1', target_host: 'www.example.com', target_path: '/confirm' },
      { id: 202, data: null, target_url: null, target_host: null, target_path: null },
      { id: 203, data: null, target_url: 'https://www.example.com/welcome', target_host: 'www.example.com', target_path: '/welcome' },
    ]);
    const [log] = await server.sql(`select client_ip, client_id::int from request_token_log where id = 2001`);
    expect(log.client_ip).toBeNull();

    // The schema may come as a search_path in the URL instead; a re-run skips what is there.
    const url = `${djangoUrl}?options=${encodeURIComponent('-c search_path=legacy')}`;
    const rerun = await runCli(
      ['import', 'django', '--from', url, '--client', 'legacy', '--target-origin', 'https://www.example.com', '--dry-run'],
      { DATABASE_URL: server.databaseUrl, REQUEST_TOKEN_SECRET: DJANGO_SECRET_KEY },
    );
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(rerun.stderr).toContain('would import 0 of 3 tokens (skipped 3 already imported)');

    const jwt = await djangoJwt({ ...base, id: 201, login_mode: 'None', scope: 'confirm', max_uses: 2, data: null });
    expect(await redeem(server, { jwt, scope: 'confirm', url: `https://www.example.com/confirm?x=1&rt=${jwt}` })).toMatchObject({
      __typename: 'Redemption', data: { legacy: true },
    });
    expect(await redeem(server, { jwt, scope: 'confirm', url: 'https://www.example.com/other' })).toMatchObject({
      code: 'TARGET_URL_MISMATCH',
    });
  });
});

describe('Django links on a service with a secret of its own: SECRET_KEY added as a verify-only key', () => {
  let ring: TestServer;
  let dir: string;
  let env: Record<string, string>;
  beforeAll(async () => {
    [ring, dir] = await Promise.all([startTestServer(), mkdtemp(join(tmpdir(), 'rt-django-'))]);
    env = { DATABASE_URL: ring.databaseUrl, REQUEST_TOKEN_SECRET: TEST_SECRET };
  });
  afterAll(async () => {
    await ring?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('redeems Django links once the key is added, signs new links with its own key, and refuses them once retired', async () => {
    const own = await issue(ring, { scope: 'newsletter' });
    const source = new pg.Client({ connectionString: djangoUrl });
    await source.connect();
    try {
      const result = await importDjango({ source, target: ring.db.pool, config: ring.config });
      expect(result.tokens.imported).toBe(result.tokens.read);
    } finally {
      await source.end();
    }
    const django = await djangoJwt(tokens.newsletter);
    expect(await redeem(ring, { jwt: django, scope: 'newsletter' })).toMatchObject({ code: 'TOKEN_SIGNATURE_INVALID' });

    const file = join(dir, 'django-secret-key');
    await writeFile(file, `${DJANGO_SECRET_KEY}\n`, { mode: 0o600 });
    const refused = await runCli(['signing-keys', 'add', '--kid', 'django', '--secret-file', file], env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('--verify-only is required');
    const add = ['signing-keys', 'add', '--kid', 'django', '--algorithm', 'HS256', '--secret-file', file, '--verify-only'];
    const added = await runCli(add, env);
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toContain('added signing key django (HS256, verify only)');
    expect((await runCli(add, env)).stderr).toContain('kid: is taken by a key of the ring');
    const [stored] = await ring.sql(`select state, encrypted_key from signing_key where kid = 'django'`);
    expect(stored.state).toBe('verify');
    expect(stored.encrypted_key).not.toContain(DJANGO_SECRET_KEY);
    await ring.services.codec.ring.refresh();

    // Uses left as Django left them (2 of 5 used there), the same refusals as there.
    expect(await redeem(ring, { jwt: django, scope: 'newsletter' })).toMatchObject({ __typename: 'Redemption', usesRemaining: 2 });
    expect(await redeem(ring, { jwt: await djangoJwt(tokens.expired), scope: 'newsletter' })).toMatchObject({ code: 'TOKEN_EXPIRED' });
    const forged = await djangoJwt(tokens.newsletter, 'another-secret-key-another-secret-key-0123456789');
    expect(await redeem(ring, { jwt: forged, scope: 'newsletter' })).toMatchObject({ code: 'TOKEN_SIGNATURE_INVALID' });
    // Only a JWT without a kid falls back to the added key: one naming the default key is that key's alone.
    const named = await new SignJWT({ max: 5, sub: 'newsletter', mod: 'n', jti: '101', iat: 1 })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: 'default' })
      .sign(new TextEncoder().encode(DJANGO_SECRET_KEY));
    expect(await redeem(ring, { jwt: named, scope: 'newsletter' })).toMatchObject({ code: 'TOKEN_SIGNATURE_INVALID' });
    // Links issued before and after keep to the service's own key.
    expect(await redeem(ring, { jwt: own.jwt, scope: 'newsletter' })).toMatchObject({ __typename: 'Redemption' });
    const fresh = await issue(ring, { scope: 'newsletter' });
    expect(decodeProtectedHeader(fresh.jwt).kid).toBe('default');
    await expect(jwtVerify(fresh.jwt, new TextEncoder().encode(DJANGO_SECRET_KEY))).rejects.toThrow();

    const retired = await runCli(['signing-keys', 'retire', 'django'], env);
    expect(retired.code, retired.stderr).toBe(0);
    await ring.services.codec.ring.refresh();
    expect(await redeem(ring, { jwt: django, scope: 'newsletter' })).toMatchObject({ code: 'TOKEN_SIGNATURE_INVALID' });
    expect(await redeem(ring, { jwt: fresh.jwt, scope: 'newsletter' })).toMatchObject({ __typename: 'Redemption' });
  });
});
