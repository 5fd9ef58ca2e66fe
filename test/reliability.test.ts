import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pruneIdempotencyKeys } from '../server/domain/idempotency.js';
import { startTestServer, type TestServer } from './support/harness.js';
import { issue, RECORD, redeem, tokenState } from './support/operations.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());

const INSPECT = /* GraphQL */ `
  query Inspect($input: InspectRequestTokenInput!) {
    inspectRequestToken(input: $input) {
      __typename
      ... on Inspection { redeemable rejectionCode rejectionMessage status usesRemaining token { id usedToDate } }
      ... on ValidationError { code issues { path message } }
    }
  }
`;
const RELEASE = /* GraphQL */ `
  mutation Release($input: RecordResponseStatusInput!) {
    recordResponseStatus(input: $input) {
      __typename
      ... on RecordResponseStatusSuccess { log { id statusCode errorCode releasedAt } }
      ... on ValidationError { code issues { path message } }
      ... on Error { code message }
    }
  }
`;

const inspect = async (input: Record<string, unknown>) => {
  const res = await server.gql(INSPECT, { input });
  if (!res.data) throw new Error(`inspect failed: ${JSON.stringify(res)}`);
  return res.data.inspectRequestToken;
};
const logCount = async () => Number((await server.sql('select count(*) as n from request_token_log'))[0].n);
const future = (minutes: number) => new Date(Date.now() + minutes * 60_000).toISOString();

describe('inspectRequestToken', () => {
  it('reports a redeemable token with its status and consumes and logs nothing, however often it is asked', async () => {
    const { jwt, token } = await issue(server, { scope: 'newsletter', maxUses: 2 });
    const logsBefore = await logCount();
    for (let i = 0; i < 5; i++) {
      expect(await inspect({ jwt, scope: 'newsletter' })).toEqual({
        __typename: 'Inspection',
        redeemable: true,
        rejectionCode: null,
        rejectionMessage: null,
        status: 'ACTIVE',
        usesRemaining: 2,
        token: { id: token.id, usedToDate: 0 },
      });
    }
    expect((await tokenState(server, token.id)).usedToDate).toBe(0);
    expect(await logCount()).toBe(logsBefore);
  });

  it('gives the same code as redemption for every refusal, in the same order', async () => {
    const target = 'https://app.example/confirm?list=7';
    const cases: [Record<string, unknown>, (jwt: string) => Record<string, unknown>, string][] = [
      [{ scope: 's', maxUses: 1 }, (jwt) => ({ jwt: `${jwt.slice(0, -4)}AAAA`, scope: 's' }), 'TOKEN_SIGNATURE_INVALID'],
      [{ scope: 's' }, () => ({ jwt: 'not-a-jwt', scope: 's' }), 'TOKEN_MALFORMED'],
      [{ scope: 's' }, (jwt) => ({ jwt, scope: 'other' }), 'SCOPE_MISMATCH'],
      [{ scope: 's', targetUrl: target }, (jwt) => ({ jwt, scope: 's', url: 'https://app.example/elsewhere' }), 'TARGET_URL_MISMATCH'],
      [{ scope: 's', userId: 'u1' }, (jwt) => ({ jwt, scope: 's', userId: 'u2' }), 'AUDIENCE_MISMATCH'],
      [{ scope: 's', notBefore: future(30) }, (jwt) => ({ jwt, scope: 's' }), 'TOKEN_NOT_YET_VALID'],
    ];
    for (const [create, input, code] of cases) {
      const { jwt } = await issue(server, create);
      const seen = await inspect(input(jwt));
      expect(seen, code).toMatchObject({ redeemable: false, rejectionCode: code });
      const refused = await redeem(server, input(jwt));
      expect(refused.code, code).toBe(code);
    }
  });

  it('reports an exhausted, then a revoked token with its status', async () => {
    const { jwt, token } = await issue(server, { scope: 'once', maxUses: 1 });
    expect((await redeem(server, { jwt, scope: 'once' })).__typename).toBe('Redemption');
    expect(await inspect({ jwt, scope: 'once' })).toMatchObject({
      redeemable: false,
      rejectionCode: 'MAX_USES_EXCEEDED',
      status: 'EXHAUSTED',
      usesRemaining: 0,
    });
    await server.sql('update request_token set revoked_at = now() where id = $1', [token.id]);
    expect(await inspect({ jwt, scope: 'once' })).toMatchObject({ rejectionCode: 'TOKEN_REVOKED', status: 'REVOKED' });
  });

  it('refuses bad input with a ValidationError', async () => {
    expect(await inspect({ jwt: '', scope: 's', url: 'ftp://x' })).toMatchObject({
      __typename: 'ValidationError',
      code: 'VALIDATION_FAILED',
      issues: [{ path: ['input', 'jwt'] }, { path: ['input', 'url'] }],
    });
  });
});

describe('redeemRequestToken with an idempotencyKey', () => {
  it('returns the original Redemption on a retry with the same key and consumes nothing more', async () => {
    const { jwt, token } = await issue(server, { scope: 'pay', maxUses: 3, data: { order: 9 } });
    const input = { jwt, scope: 'pay', idempotencyKey: 'req-1', clientIp: '198.51.100.4' };
    const first = await redeem(server, input);
    expect(first).toMatchObject({ __typename: 'Redemption', usesRemaining: 2, data: { order: 9 } });
    const again = await redeem(server, input);
    expect(again).toMatchObject({ __typename: 'Redemption', id: first.id, data: { order: 9 }, usesRemaining: 2 });
    const state = await tokenState(server, token.id);
    expect(state.usedToDate).toBe(1);
    expect(state.logs).toHaveLength(1);
    // Another key is another redemption.
    const other = await redeem(server, { ...input, idempotencyKey: 'req-2' });
    expect(other.id).not.toBe(first.id);
    expect((await tokenState(server, token.id)).usedToDate).toBe(2);
  });

  it('replays the original even when that redemption used the last use', async () => {
    const { jwt } = await issue(server, { scope: 'last', maxUses: 1 });
    const first = await redeem(server, { jwt, scope: 'last', idempotencyKey: 'k' });
    expect(first.__typename).toBe('Redemption');
    expect(await redeem(server, { jwt, scope: 'last', idempotencyKey: 'k' })).toMatchObject({ id: first.id, usesRemaining: 0 });
    expect((await redeem(server, { jwt, scope: 'last', idempotencyKey: 'k2' })).code).toBe('MAX_USES_EXCEEDED');
  });

  it('refuses the same key with different parameters as a ValidationError, consuming nothing', async () => {
    const { jwt, token } = await issue(server, { scope: 'pay', maxUses: 5 });
    await redeem(server, { jwt, scope: 'pay', userId: 'a', idempotencyKey: 'same' });
    const logs = (await tokenState(server, token.id)).logs.length;
    const clash = await redeem(server, { jwt, scope: 'pay', userId: 'b', idempotencyKey: 'same' });
    expect(clash).toMatchObject({
      __typename: 'ValidationError',
      issues: [{ path: ['input', 'idempotencyKey'] }],
    });
    const state = await tokenState(server, token.id);
    expect(state.usedToDate).toBe(1);
    expect(state.logs).toHaveLength(logs);
  });

  it('scopes a key to its token', async () => {
    const a = await issue(server, { scope: 'k', maxUses: 1 });
    const b = await issue(server, { scope: 'k', maxUses: 1 });
    const ra = await redeem(server, { jwt: a.jwt, scope: 'k', idempotencyKey: 'shared' });
    const rb = await redeem(server, { jwt: b.jwt, scope: 'k', idempotencyKey: 'shared' });
    expect(ra.__typename).toBe('Redemption');
    expect(rb.__typename).toBe('Redemption');
    expect(rb.id).not.toBe(ra.id);
  });

  it('lets only one of many concurrent redemptions with the same key consume', async () => {
    const { jwt, token } = await issue(server, { scope: 'race', maxUses: 10 });
    const results = await Promise.all(
      Array.from({ length: 40 }, () => redeem(server, { jwt, scope: 'race', idempotencyKey: 'burst' })),
    );
    expect(results.map((r) => r.__typename)).toEqual(Array(40).fill('Redemption'));
    expect(new Set(results.map((r) => r.id)).size).toBe(1);
    const state = await tokenState(server, token.id);
    expect(state.usedToDate).toBe(1);
    expect(state.logs).toHaveLength(1);
  });

  it('is still honoured a day later (kept at least 24 hours)', async () => {
    const { jwt, token } = await issue(server, { scope: 'old', maxUses: 2 });
    const first = await redeem(server, { jwt, scope: 'old', idempotencyKey: 'yesterday' });
    await server.sql(`update request_token_idempotency set created_at = now() - interval '25 hours' where token_id = $1`, [
      token.id,
    ]);
    expect((await redeem(server, { jwt, scope: 'old', idempotencyKey: 'yesterday' })).id).toBe(first.id);
    expect((await tokenState(server, token.id)).usedToDate).toBe(1);
  });

  it('prunes keys past their retention, never younger than 24 hours', async () => {
    const { jwt, token } = await issue(server, { scope: 'prune', maxUses: 3 });
    await redeem(server, { jwt, scope: 'prune', idempotencyKey: 'old' });
    await redeem(server, { jwt, scope: 'prune', idempotencyKey: 'young' });
    await server.sql(
      `update request_token_idempotency set created_at = now() - case key when 'old' then interval '49 hours'
         else interval '23 hours' end where token_id = $1`,
      [token.id],
    );
    expect(await pruneIdempotencyKeys(server.services.pool, 1)).toBeGreaterThanOrEqual(1); // 1 h is raised to 24 h
    const left = await server.sql('select key from request_token_idempotency where token_id = $1', [token.id]);
    expect(left.map((r) => r.key)).toEqual(['young']);
  });

  it('refuses a key that is empty or too long', async () => {
    const { jwt } = await issue(server, { scope: 'v' });
    for (const idempotencyKey of ['', 'x'.repeat(256)]) {
      expect(await redeem(server, { jwt, scope: 'v', idempotencyKey })).toMatchObject({
        __typename: 'ValidationError',
        issues: [{ path: ['input', 'idempotencyKey'] }],
      });
    }
  });
});

describe('recordResponseStatus with releaseUse', () => {
  it('gives the use back once, marks the log row, and a second release changes nothing', async () => {
    const { jwt, token } = await issue(server, { scope: 'rel', maxUses: 1 });
    const r = await redeem(server, { jwt, scope: 'rel' });
    expect((await tokenState(server, token.id)).usedToDate).toBe(1);
    const released = (await server.gql(RELEASE, { input: { redemptionId: r.id, statusCode: 503, releaseUse: true } })).data!
      .recordResponseStatus;
    expect(released).toMatchObject({ __typename: 'RecordResponseStatusSuccess', log: { id: r.id, statusCode: 503 } });
    expect(released.log.releasedAt).toEqual(expect.any(String));
    expect((await tokenState(server, token.id)).usedToDate).toBe(0);
    const twice = (await server.gql(RELEASE, { input: { redemptionId: r.id, statusCode: 500, releaseUse: true } })).data!
      .recordResponseStatus;
    expect(twice.log.releasedAt).toBe(released.log.releasedAt);
    expect((await tokenState(server, token.id)).usedToDate).toBe(0);
    // The use really is back: the one-use token redeems again, once.
    expect((await redeem(server, { jwt, scope: 'rel' })).__typename).toBe('Redemption');
    expect((await redeem(server, { jwt, scope: 'rel' })).code).toBe('MAX_USES_EXCEEDED');
  });

  it('gives a use back once under concurrent releases of one redemption', async () => {
    const { jwt, token } = await issue(server, { scope: 'rel2', maxUses: 3 });
    await redeem(server, { jwt, scope: 'rel2' });
    const r = await redeem(server, { jwt, scope: 'rel2' });
    await Promise.all(
      Array.from({ length: 10 }, () => server.gql(RELEASE, { input: { redemptionId: r.id, statusCode: 502, releaseUse: true } })),
    );
    expect((await tokenState(server, token.id)).usedToDate).toBe(1);
  });

  it('frees the idempotency key so a retry with it redeems afresh', async () => {
    const { jwt, token } = await issue(server, { scope: 'rel3', maxUses: 2 });
    const first = await redeem(server, { jwt, scope: 'rel3', idempotencyKey: 'k' });
    await server.gql(RELEASE, { input: { redemptionId: first.id, statusCode: 500, releaseUse: true } });
    const retry = await redeem(server, { jwt, scope: 'rel3', idempotencyKey: 'k' });
    expect(retry.__typename).toBe('Redemption');
    expect(retry.id).not.toBe(first.id);
    expect((await tokenState(server, token.id)).usedToDate).toBe(1);
  });

  it('refuses to release for a non-5xx status or a refusal, and changes nothing', async () => {
    const { jwt, token } = await issue(server, { scope: 'rel4', maxUses: 1 });
    const ok = await redeem(server, { jwt, scope: 'rel4' });
    const refused = await redeem(server, { jwt, scope: 'rel4' });
    const res200 = (await server.gql(RELEASE, { input: { redemptionId: ok.id, statusCode: 200, releaseUse: true } })).data!
      .recordResponseStatus;
    expect(res200).toMatchObject({ __typename: 'ValidationError', issues: [{ path: ['input', 'releaseUse'] }] });
    const onRefusal = (
      await server.gql(RELEASE, { input: { redemptionId: refused.logId, statusCode: 500, releaseUse: true } })
    ).data!.recordResponseStatus;
    expect(onRefusal).toMatchObject({ __typename: 'ValidationError', issues: [{ path: ['input', 'releaseUse'] }] });
    const state = await tokenState(server, token.id);
    expect(state.usedToDate).toBe(1);
    expect(state.logs.map((l) => [l.status_code, l.released_at])).toEqual([
      [null, null],
      [null, null],
    ]);
    const missing = (await server.gql(RECORD, { input: { redemptionId: '999999999', statusCode: 500, releaseUse: true } }))
      .data!.recordResponseStatus;
    expect(missing.code).toBe('NOT_FOUND');
  });
});
