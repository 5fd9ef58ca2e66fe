import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './support/harness.js';
import { CREATE, REDEEM } from './support/operations.js';
import { hs256, keyFor, tenantKey } from './security/support.js';

// One server (GRAPHQL_FAST_PATH=prepared, the default). A document Yoga has validated once runs on the prepared lane
// when it comes again as a plain JSON POST; an Origin header sends the same request through Yoga's transport and
// hooks. Every answer must be the same, byte for byte (or, where the data differs from one request to the next, with
// ids, JWTs and times put aside), and the lane's counters say which way each request went.
let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
  // A trigger that fails one issue in the middle of a mutation, to see an operation that ran with an error.
  await server.sql(`create function refuse_boom() returns trigger language plpgsql as $$
    begin if new.scope = 'boom' then raise exception 'boom refused'; end if; return new; end $$`);
  await server.sql(`create trigger refuse_boom before insert on request_token for each row execute function refuse_boom()`);
});
afterAll(() => server?.close());

interface Init {
  body: string;
  /** The API key; null sends no Authorization header. Default: the admin key. */
  key?: string | null;
  accept?: string;
}

async function send(init: Init, throughYoga: boolean) {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const key = init.key === undefined ? server.apiKey : init.key;
  if (key !== null) headers.authorization = `Bearer ${key}`;
  if (init.accept) headers.accept = init.accept;
  // Not a configured CORS origin: Yoga answers without CORS headers, as it answers a server.
  if (throughYoga) headers.origin = 'https://elsewhere.example';
  const res = await fetch(server.graphqlUrl, { method: 'POST', headers, body: init.body });
  return {
    status: res.status,
    type: res.headers.get('content-type'),
    retryAfter: res.headers.get('retry-after') === null ? null : 'present',
    body: await res.text(),
  };
}

type Lane = 'prepared' | 'preparedThroughYoga' | 'none';

/** The request through Yoga, then through the lean path: the lane it took there, and both answers. */
async function both(init: Init) {
  const yoga = await send(init, true);
  const before = { ...server.app.lanes };
  const lean = await send(init, false);
  const after = server.app.lanes;
  const lane: Lane =
    after.prepared > before.prepared ? 'prepared' : after.preparedThroughYoga > before.preparedThroughYoga ? 'preparedThroughYoga' : 'none';
  return { yoga, lean, lane };
}

async function same(init: Init, lane: Lane) {
  const answers = await both(init);
  expect(answers.lean).toEqual(answers.yoga);
  expect(answers.lane).toBe(lane);
  return answers.lean;
}

/** Ids, JWTs and times differ between two issues or two logged attempts; nothing else may. */
const normalised = (answer: { body: string }) => ({
  ...answer,
  body: answer.body
    .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g, '<time>')
    .replace(/eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/g, '<jwt>')
    .replace(/"(id|logId|tokenId)":"\d+"/g, '"$1":"<id>"'),
});

const op = (query: string, variables?: Record<string, unknown>) => JSON.stringify({ query, variables });
const forged = hs256('not the secret', { alg: 'HS256', typ: 'JWT' }, { jti: '1', sub: 's', mod: 'n', max: 1, iat: 1 });
const TOKEN = 'query Token($id: ID!) { requestToken(id: $id) { id scope maxUses usedToDate status } }';

describe('a prepared operation answers as Yoga does', () => {
  it('for a refusal', async () => {
    const answer = await same({ body: op(REDEEM, { input: { jwt: forged, scope: 's', clientIp: '192.0.2.1' } }) }, 'prepared');
    expect(JSON.parse(answer.body).data.redeemRequestToken.code).toBe('TOKEN_SIGNATURE_INVALID');
  });

  it('for a query', async () => {
    const issued = JSON.parse((await send({ body: op(CREATE, { input: { scope: 'read-me', maxUses: 3 } }) }, false)).body);
    const answer = await same({ body: op(TOKEN, { id: issued.data.createRequestToken.token.id }) }, 'prepared');
    expect(JSON.parse(answer.body).data.requestToken).toMatchObject({ scope: 'read-me', maxUses: 3, status: 'ACTIVE' });
  });

  it('for an issue and a redemption', async () => {
    const issue = op(CREATE, { input: { scope: 'news', userId: 'u1', maxUses: 2, data: { a: 1 } } });
    const issued = await both({ body: issue });
    expect(issued.lane).toBe('prepared');
    expect(normalised(issued.lean)).toEqual(normalised(issued.yoga));
    // Each side redeems its own token.
    const jwts = [issued.yoga, issued.lean].map((a) => JSON.parse(a.body).data.createRequestToken.jwt as string);
    const redemption = (jwt: string) => ({ body: op(REDEEM, { input: { jwt, scope: 'news', clientIp: '192.0.2.1' } }) });
    const yoga = await send(redemption(jwts[0]), true);
    const before = server.app.lanes.prepared;
    const lean = await send(redemption(jwts[1]), false);
    expect(server.app.lanes.prepared).toBe(before + 1);
    expect(JSON.parse(lean.body).data.redeemRequestToken.__typename).toBe('Redemption');
    expect(normalised(lean)).toEqual(normalised(yoga));
  });

  it('for variables that do not coerce: Yoga answers, nothing ran', async () => {
    await same({ body: op(REDEEM, { input: { jwt: 1 } }) }, 'preparedThroughYoga');
    await same({ body: op(REDEEM, { input: { jwt: 1 } }), accept: 'application/graphql-response+json' }, 'preparedThroughYoga');
    await same({ body: op(REDEEM, {}) }, 'preparedThroughYoga');
  });

  it('for a query with field errors: Yoga runs it again', async () => {
    const answer = await same({ body: op('query Many { requestTokens(first: 1000) { totalCount } }') }, 'preparedThroughYoga');
    expect(JSON.parse(answer.body).errors[0].extensions.code).toBe('BAD_USER_INPUT');
  });

  it('for a mutation that failed in part: answered by Yoga, not run twice', async () => {
    const body = op(`mutation Two($a: CreateRequestTokenInput!, $b: CreateRequestTokenInput!) {
      a: createRequestToken(input: $a) { __typename ... on CreateRequestTokenSuccess { token { scope } } }
      b: createRequestToken(input: $b) { __typename } }`, { a: { scope: 'twice?' }, b: { scope: 'boom' } });
    const answers = await both({ body });
    expect(answers.lane).toBe('preparedThroughYoga');
    expect(answers.lean).toEqual(answers.yoga);
    // The mutation's fields are non-null: its data is null, the error masked.
    expect(JSON.parse(answers.lean.body)).toEqual({
      data: null,
      errors: [{ message: 'Unexpected error.', extensions: { code: 'INTERNAL_SERVER_ERROR' } }],
    });
    // One token per request: the lane's run was answered, not repeated.
    expect(await server.sql(`select count(*)::int as n from request_token where scope = 'twice?'`)).toEqual([{ n: 2 }]);
  });

  it('for a missing, malformed or unknown API key', async () => {
    const body = op(REDEEM, { input: { jwt: forged, scope: 's' } });
    expect((await same({ body, key: null }, 'none')).status).toBe(401);
    expect((await same({ body, key: 'garbage' }, 'none')).status).toBe(401);
    const unknown = `rt_AAAAAAAAAAAA_${'B'.repeat(43)}`;
    expect((await same({ body, key: unknown }, 'none')).status).toBe(401);
  });

  it('for a key that lacks the permission', async () => {
    const { key } = await keyFor(server, '1', ['redeem']);
    const answer = await same({ body: op(CREATE, { input: { scope: 'news' } }), key }, 'none');
    expect(answer.status).toBe(403);
  });

  it("for another tenant's token", async () => {
    const issued = JSON.parse((await send({ body: op(CREATE, { input: { scope: 'mine' } }) }, false)).body);
    const { key } = await tenantKey(server, 'elsewhere', ['redeem']);
    const body = op(REDEEM, { input: { jwt: issued.data.createRequestToken.jwt, scope: 'mine' } });
    const answers = await both({ body, key });
    expect(answers.lane).toBe('prepared');
    expect(normalised(answers.lean)).toEqual(normalised(answers.yoga));
    expect(JSON.parse(answers.lean.body).data.redeemRequestToken.code).toBe('TOKEN_NOT_FOUND');
  });

  it('for a key over its rate limit, each request counted once whichever way it went', async () => {
    const { key } = await keyFor(server, '1', ['redeem'], { rateLimitPerMinute: 4 });
    const refusal = { body: op(REDEEM, { input: { jwt: forged, scope: 's' } }), key };
    expect((await send(refusal, true)).status).toBe(200); // 1, through Yoga
    const before = { ...server.app.lanes };
    expect((await send({ body: op(REDEEM, { input: { jwt: 1 } }), key }, false)).status).toBe(400); // 2, taken, Yoga answers
    expect((await send(refusal, false)).status).toBe(200); // 3, prepared
    expect((await send(refusal, false)).status).toBe(200); // 4, prepared
    expect(server.app.lanes).toEqual({ prepared: before.prepared + 2, preparedThroughYoga: before.preparedThroughYoga + 1 });
    const limited = await same(refusal, 'none');
    expect(limited.status).toBe(429);
    expect(limited.retryAfter).toBe('present');
    expect(JSON.parse(limited.body).errors[0].extensions.code).toBe('RATE_LIMITED');
  });

  it('for a key revoked in this process: refused at once', async () => {
    const { key, id } = await keyFor(server, '1', ['redeem']);
    const body = op(REDEEM, { input: { jwt: forged, scope: 's' } });
    await same({ body, key }, 'prepared');
    const revoked = await send({ body: op('mutation R($id: ID!) { revokeApiKey(id: $id) { __typename } }', { id }) }, false);
    expect(JSON.parse(revoked.body).data.revokeApiKey.__typename).toBe('RevokeApiKeySuccess');
    expect((await same({ body, key }, 'none')).status).toBe(401);
  });
});
