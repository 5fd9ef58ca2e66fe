import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createJwtCodec } from '../server/domain/jwt.js';
import { truncateLogs } from '../server/domain/log-retention.js';
import { ensureLogPartitions } from '../server/domain/log-partitions.js';
import { startTestServer, type TestServer } from './support/harness.js';
import { issue, redeem } from './support/operations.js';
import { ROOT } from './support/process.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());

const LOOKUP = /* GraphQL */ `
  query Lookup($jwt: String!) {
    findRequestTokenByJwt(jwt: $jwt) {
      __typename
      ... on RequestTokenLookup {
        token { id scope status usedToDate revokedAt logs { totalCount edges { node { errorCode } } } }
        claims { tokenId scope loginMode maxUses userId issuedAt expiresAt notBefore raw }
      }
      ... on Error { code message }
      ... on ValidationError { issues { path message } }
    }
  }
`;

const logCount = async () => (await server.sql('select count(*)::int as n from request_token_log'))[0].n as number;

describe('findRequestTokenByJwt', () => {
  it('finds an exhausted token with its claims decoded and its history, logging nothing', async () => {
    const expiresAt = new Date(Date.now() + 3_600_000);
    const issued = await issue(server, { scope: 'lookup', userId: 'ann', loginMode: 'REQUEST', maxUses: 1, expiresAt: expiresAt.toISOString() });
    await redeem(server, { jwt: issued.jwt, scope: 'lookup', userId: 'ann' });
    await redeem(server, { jwt: issued.jwt, scope: 'lookup', userId: 'ann' });
    const before = await logCount();

    const res = await server.gql(LOOKUP, { jwt: issued.jwt });
    const found = res.data.findRequestTokenByJwt;
    expect(found.__typename).toBe('RequestTokenLookup');
    expect(found.token).toMatchObject({ id: issued.token.id, scope: 'lookup', status: 'EXHAUSTED', usedToDate: 1 });
    expect(found.token.logs.totalCount).toBe(2);
    expect(found.token.logs.edges.map((e: any) => e.node.errorCode)).toEqual(['MAX_USES_EXCEEDED', null]);
    const issuedAt = Math.floor(new Date(issued.token.issuedAt).getTime() / 1000);
    expect(found.claims).toEqual({
      tokenId: issued.token.id,
      scope: 'lookup',
      loginMode: 'REQUEST',
      maxUses: 1,
      userId: 'ann',
      issuedAt: new Date(issuedAt * 1000).toISOString(),
      expiresAt: new Date(Math.floor(expiresAt.getTime() / 1000) * 1000).toISOString(),
      notBefore: null,
      raw: { jti: issued.token.id, sub: 'lookup', mod: 'r', max: 1, aud: 'ann', iat: issuedAt, exp: Math.floor(expiresAt.getTime() / 1000) },
    });
    expect(await logCount()).toBe(before);
  });

  it('finds revoked and expired tokens too', async () => {
    const revoked = await issue(server, { scope: 'lookup' });
    await server.gql(`mutation($id: ID!) { revokeRequestToken(id: $id) { __typename } }`, { id: revoked.token.id });
    const expired = await issue(server, { scope: 'lookup', expiresAt: new Date(Date.now() + 60_000).toISOString() });
    await server.sql(`update request_token set expires_at = now() - interval '1 hour' where id = $1`, [expired.token.id]);
    for (const [jwt, status] of [[revoked.jwt, 'REVOKED'], [expired.jwt, 'EXPIRED']]) {
      const res = await server.gql(LOOKUP, { jwt });
      expect(res.data.findRequestTokenByJwt.token.status).toBe(status);
    }
  });

  it('tells a malformed JWT from a foreign signature and from a token that is gone', async () => {
    const foreign = await (await createJwtCodec('another-secret-another-secret-another-secret'))
      .sign({ jti: '1', sub: 'lookup', mod: 'n', max: 1, iat: 1 });
    const ours = await server.services.codec.sign({ jti: '999999', sub: 'lookup', mod: 'n', max: 1, iat: 1 });
    const existing = await issue(server, { scope: 'lookup' });
    // Our signature on an existing id, but with claims the stored token does not have (a database recreated under
    // the same secret): not that token.
    const stale = await server.services.codec.sign({ jti: existing.token.id, sub: 'other', mod: 'n', max: 1, iat: 1 });
    const cases: [string, string, string][] = [
      ['not a jwt', 'InvalidJwtError', 'TOKEN_MALFORMED'],
      [foreign, 'InvalidJwtError', 'TOKEN_SIGNATURE_INVALID'],
      [ours, 'NotFoundError', 'NOT_FOUND'],
      [stale, 'NotFoundError', 'NOT_FOUND'],
      ['', 'ValidationError', 'VALIDATION_FAILED'],
    ];
    const before = await logCount();
    for (const [jwt, typename, code] of cases) {
      const res = await server.gql(LOOKUP, { jwt });
      expect(res.data.findRequestTokenByJwt).toMatchObject({ __typename: typename, code });
    }
    expect(await logCount()).toBe(before);
  });
});

const BULK = /* GraphQL */ `
  mutation Bulk($filter: RevokeRequestTokensFilter!) {
    revokeRequestTokens(filter: $filter) {
      __typename
      ... on RevokeRequestTokensSuccess { revokedCount }
      ... on ValidationError { code issues { path message } }
    }
  }
`;

describe('revokeRequestTokens', () => {
  beforeEach(async () => {
    await server.sql(`delete from request_token_log`);
    // Retention drops whole months: the months of the rows below are created again.
    await ensureLogPartitions(server.db.pool, { from: new Date(Date.now() - 41 * 86_400_000), to: new Date() });
    await server.sql(`delete from request_token`);
    await server.sql(
      `insert into request_token (client_id, scope, user_id, max_uses, issued_at) values
        (1, 'bulk', 'u1', 1, '2026-01-01T00:00:00Z'), (1, 'bulk', 'u1', 1, '2026-02-01T00:00:00Z'),
        (1, 'bulk', 'u2', 1, '2026-01-15T00:00:00Z'), (1, 'other', 'u1', 1, '2026-01-10T00:00:00Z')`,
    );
  });
  const revokedRows = async () =>
    (await server.sql(`select scope, user_id, issued_at from request_token where revoked_at is not null order by issued_at`))
      .map((r) => `${r.scope}/${r.user_id}/${r.issued_at.toISOString().slice(0, 10)}`);

  it('revokes by scope and issue time, counting only tokens it revoked', async () => {
    const res = await server.gql(BULK, { filter: { scope: 'bulk', issuedBefore: '2026-01-20T00:00:00Z' } });
    expect(res.data.revokeRequestTokens).toEqual({ __typename: 'RevokeRequestTokensSuccess', revokedCount: 2 });
    expect(await revokedRows()).toEqual(['bulk/u1/2026-01-01', 'bulk/u2/2026-01-15']);
    const again = await server.gql(BULK, { filter: { scope: 'bulk' } });
    expect(again.data.revokeRequestTokens.revokedCount).toBe(1);
    expect(await revokedRows()).toHaveLength(3);
  });

  it('revokes every token of a user across scopes', async () => {
    const res = await server.gql(BULK, { filter: { userId: 'u1' } });
    expect(res.data.revokeRequestTokens.revokedCount).toBe(3);
    expect(await revokedRows()).toEqual(['bulk/u1/2026-01-01', 'other/u1/2026-01-10', 'bulk/u1/2026-02-01']);
  });

  it('refuses an empty filter and revokes nothing', async () => {
    const res = await server.gql(BULK, { filter: {} });
    expect(res.data.revokeRequestTokens).toMatchObject({ __typename: 'ValidationError', code: 'VALIDATION_FAILED' });
    expect(await revokedRows()).toEqual([]);
  });
});

const TRUNCATE = /* GraphQL */ `
  mutation Truncate($maxCount: Int, $maxDays: Int) {
    truncateRequestTokenLogs(maxCount: $maxCount, maxDays: $maxDays) {
      __typename
      ... on TruncateRequestTokenLogsSuccess { deletedCount oldestDeleted newestDeleted }
      ... on ValidationError { code issues { path message } }
    }
  }
`;

describe('truncateRequestTokenLogs', () => {
  // 40 rows, one a day, the newest today (ids ascending with time).
  beforeEach(async () => {
    await server.sql(`delete from request_token_log`);
    // Retention drops whole months: the months of the rows below are created again.
    await ensureLogPartitions(server.db.pool, { from: new Date(Date.now() - 41 * 86_400_000), to: new Date() });
    await server.sql(
      `insert into request_token_log (token_id, error_code, timestamp)
       select 0, 'TOKEN_MALFORMED', now() - make_interval(days => 39 - i) - interval '1 minute' from generate_series(0, 39) i`,
    );
  });
  const remaining = async () =>
    (await server.sql(`select count(*)::int as n, min(timestamp) as oldest from request_token_log`))[0];

  it('keeps the newest maxCount rows', async () => {
    const res = await server.gql(TRUNCATE, { maxCount: 25 });
    expect(res.data.truncateRequestTokenLogs).toMatchObject({ __typename: 'TruncateRequestTokenLogsSuccess', deletedCount: 15 });
    const kept = await server.sql(`select id from request_token_log order by id`);
    const all = kept.map((r) => Number(r.id));
    expect(all).toHaveLength(25);
    expect(new Date(res.data.truncateRequestTokenLogs.newestDeleted) < (await remaining()).oldest).toBe(true);
  });

  it('keeps the last maxDays days', async () => {
    const res = await server.gql(TRUNCATE, { maxDays: 10 });
    // Rows 0..9 days old (minus a minute) stay.
    expect(res.data.truncateRequestTokenLogs.deletedCount).toBe(30);
    expect((await remaining()).n).toBe(10);
  });

  it('applies both limits: whichever deletes more wins', async () => {
    expect((await server.gql(TRUNCATE, { maxCount: 35, maxDays: 5 })).data.truncateRequestTokenLogs.deletedCount).toBe(35);
    expect((await server.gql(TRUNCATE, { maxCount: 2, maxDays: 30 })).data.truncateRequestTokenLogs.deletedCount).toBe(3);
    expect((await remaining()).n).toBe(2);
  });

  it('drops whole months and deletes in batches of the given size inside the month it cuts, oldest first', async () => {
    // The 37 oldest rows go, month by month, oldest first: a month that keeps none of the 3 newest goes whole, the month
    // that keeps some loses its doomed rows in batches of 8. The rows span two months, or three on a month's first day.
    const rows = await server.sql<{ month: string }>(
      `select to_char(timestamp at time zone 'UTC', 'YYYY-MM') as month from request_token_log order by id`,
    );
    const keptMonths = new Set(rows.slice(37).map((r) => r.month));
    const expected: unknown[] = [];
    for (const month of new Set(rows.slice(0, 37).map((r) => r.month))) {
      const doomed = rows.slice(0, 37).filter((r) => r.month === month).length;
      if (!keptMonths.has(month)) expected.push({ count: doomed, dropped: `request_token_log_y${month.replace('-', 'm')}` });
      else for (let left = doomed; left > 0; left -= 8) expected.push({ count: Math.min(8, left), dropped: null });
    }
    expect(expected.length).toBeGreaterThan(1);
    const steps: { count: number; dropped: string | null }[] = [];
    let lastId = 0;
    // On one connection, so that its batches come oldest first (by default the month's doomed rows are deleted in two
    // halves at once: test/log-retention.test.ts).
    const result = await truncateLogs(server.db.pool, { maxCount: 3, batchSize: 8 }, {
      connections: 1,
      onBatch(batch) {
        expect(Number(batch.firstId)).toBeGreaterThan(lastId);
        lastId = Number(batch.lastId);
      },
      async onRemoved(_client, removed) {
        steps.push({ count: removed.count, dropped: removed.droppedPartition });
      },
    });
    expect(steps).toEqual(expected);
    expect(result.count).toBe(37);
  });

  it('refuses missing or negative limits and deletes nothing', async () => {
    for (const variables of [{}, { maxCount: -1 }, { maxDays: -2 }]) {
      const res = await server.gql(TRUNCATE, variables);
      expect(res.data.truncateRequestTokenLogs).toMatchObject({ __typename: 'ValidationError' });
    }
    expect((await remaining()).n).toBe(40);
  });

  it('is a command line too, printing what it deletes', async () => {
    const run = (args: string[]) =>
      promisify(execFile)(process.execPath, ['bin/request-token.mjs', 'logs', 'truncate', ...args], {
        cwd: ROOT,
        env: { PATH: process.env.PATH, DATABASE_URL: server.databaseUrl, REQUEST_TOKEN_SECRET: 'x'.repeat(40) },
      });
    const dry = await run(['--max-count', '30', '--dry-run']);
    expect(dry.stdout).toMatch(/^log rows beyond the newest 30 rows \(ids up to \d+\): 10 \(ids \d+–\d+, /);
    expect(dry.stdout).toContain('dry run: would delete 10 log rows');
    expect((await remaining()).n).toBe(40);

    const { stdout } = await run(['--max-count', '30', '--max-days', '35', '--batch-size', '3']);
    // Months wholly doomed are dropped (one line each), the rest deleted 3 rows at a time: 10 rows in all.
    const steps = [...stdout.matchAll(/^(dropped request_token_log_y\d{4}m\d{2}, a whole month: |deleted )(\d+) rows?\b/gm)];
    expect(steps.reduce((n, m) => n + Number(m[2]), 0)).toBe(10);
    const batches = steps.filter((m) => m[1] === 'deleted ').map((m) => Number(m[2]));
    expect(batches.slice(0, -1).every((n) => n === 3) && batches.every((n) => n >= 1 && n <= 3)).toBe(true);
    expect(stdout).toContain('deleted 10 log rows in total');
    expect((await remaining()).n).toBe(30);

    const bad = await run(['--max-count', 'ten']).catch((error) => error);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--max-count must be a whole number');
  });
});

describe('viewer', () => {
  it("names the calling key and its permissions, never its secret", async () => {
    const res = await server.gql(`{ viewer { keyId name permissions } }`);
    expect(res.data.viewer).toEqual({ keyId: server.apiKey.split('_')[1], name: 'test admin', permissions: ['admin'] });
  });
});

describe('through the SDK', () => {
  it('exposes the dashboard operations as typed methods', async () => {
    const { createRequestTokenClient } = await import('@request-token/sdk');
    const rt = createRequestTokenClient({ url: server.graphqlUrl, apiKey: server.apiKey });
    const viewer = await rt.viewer();
    expect(viewer.permissions).toEqual(['admin']);
    const stats = await rt.usageStats({ bucket: 'HOUR' });
    expect(stats.timeZone).toBe('UTC');
    expect(stats.buckets).toHaveLength(48);
    const lookup = await rt.findRequestTokenByJwt({ jwt: 'nope' });
    expect(lookup.__typename).toBe('InvalidJwtError');
    const revoked = await rt.revokeRequestTokens({ filter: { scope: 'no-such-scope' } });
    expect(revoked).toEqual({ __typename: 'RevokeRequestTokensSuccess', revokedCount: 0 });
  });
});
