import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CREATE, REDEEM, RECORD } from '../support/operations.js';
import { startTestServer, TEST_SECRET, type TestServer } from '../support/harness.js';
import { consumption, hs256, keyFor, tenantKey, withoutConsumption } from './support.js';
import { ruleFor } from '../../server/http/authorization.js';

let server: TestServer;
let acme: { client: { id: string }; key: string };
let globex: { client: { id: string }; key: string };
let acmeToken: { id: string; jwt: string };
let acmeRedemptionId: string;

async function issueAs(key: string, input: Record<string, unknown>) {
  const res = await server.gql(CREATE, { input }, key);
  const result = res.data?.createRequestToken;
  if (result?.__typename !== 'CreateRequestTokenSuccess') throw new Error(JSON.stringify(res));
  return { id: result.token.id as string, jwt: result.jwt as string };
}

beforeAll(async () => {
  server = await startTestServer();
  acme = await tenantKey(server, 'acme', ['issue', 'redeem', 'read']);
  globex = await tenantKey(server, 'globex', ['issue', 'redeem', 'read']);
  acmeToken = await issueAs(acme.key, { scope: 's', maxUses: 5, userId: 'alice' });
  const first = await server.gql(REDEEM, { input: { jwt: acmeToken.jwt, scope: 's' } }, acme.key);
  acmeRedemptionId = first.data.redeemRequestToken.id;
});
afterAll(() => server?.close());

const TOKEN = 'query T($id: ID!) { requestToken(id: $id) { id scope } }';
const TOKENS = '{ requestTokens { totalCount edges { node { id } } } }';
const LOGS = '{ requestTokenLogs { totalCount edges { node { id token { id } } } } }';
const REVOKE =
  'mutation R($id: ID!) { revokeRequestToken(id: $id) { __typename ... on Error { code } ... on RevokeRequestTokenSuccess { token { id } } } }';

describe('tenants', () => {
  it('issues into the caller’s client and records it on the token', async () => {
    const [row] = await server.sql('select client_id from request_token where id = $1', [acmeToken.id]);
    expect(String(row.client_id)).toBe(acme.client.id);
  });

  it('refuses another client’s token at redemption exactly like an unknown one, consuming nothing', async () => {
    const foreign = await withoutConsumption(server, () =>
      server.gql(REDEEM, { input: { jwt: acmeToken.jwt, scope: 's' } }, globex.key),
    );
    expect(foreign.data.redeemRequestToken).toMatchObject({ code: 'TOKEN_NOT_FOUND', tokenId: null });
    const unknownJwt = hs256(TEST_SECRET, { alg: 'HS256', typ: 'JWT', kid: 'default' }, {
      jti: '999999', sub: 's', mod: 'n', max: 5, iat: Math.floor(Date.now() / 1000),
    });
    const unknown = await server.gql(REDEEM, { input: { jwt: unknownJwt, scope: 's' } }, globex.key);
    const { logId: _a, ...foreignAnswer } = foreign.data.redeemRequestToken;
    const { logId: _b, ...unknownAnswer } = unknown.data.redeemRequestToken;
    expect(foreignAnswer).toEqual(unknownAnswer);
    // The refusal is logged for the caller's client, not tied to the other client's token.
    const [log] = await server.sql('select token_id, client_id from request_token_log where id = $1', [
      foreign.data.redeemRequestToken.logId,
    ]);
    // Token id 0: no token of the caller's (the log has no null token id).
    expect(log).toMatchObject({ token_id: '0' });
    expect(String(log.client_id)).toBe(globex.client.id);
  });

  it('reads another client’s token as missing (null), like an unknown id', async () => {
    const foreign = await server.gql(TOKEN, { id: acmeToken.id }, globex.key);
    const unknown = await server.gql(TOKEN, { id: '999999' }, globex.key);
    expect(foreign).toEqual(unknown);
    expect(foreign.data.requestToken).toBeNull();
    expect((await server.gql(TOKEN, { id: acmeToken.id }, acme.key)).data.requestToken.id).toBe(acmeToken.id);
  });

  it('lists only the caller’s tokens and logs (a second client sees none of the first one’s in GraphiQL)', async () => {
    const theirs = await server.gql(TOKENS, {}, globex.key);
    expect(theirs.data.requestTokens).toEqual({ totalCount: 0, edges: [] });
    const logs = await server.gql(LOGS, {}, globex.key);
    expect(logs.data.requestTokenLogs.edges.every((e: any) => e.node.token === null)).toBe(true);
    expect(JSON.stringify(logs)).not.toContain(`"${acmeRedemptionId}"`);
    const mine = await server.gql(TOKENS, {}, acme.key);
    expect(mine.data.requestTokens.edges.map((e: any) => e.node.id)).toEqual([acmeToken.id]);
  });

  it('refuses to revoke another client’s token with NOT_FOUND, like an unknown id', async () => {
    const foreign = await withoutConsumption(server, () => server.gql(REVOKE, { id: acmeToken.id }, globex.key));
    const unknown = await server.gql(REVOKE, { id: '999999' }, globex.key);
    expect(foreign.data.revokeRequestToken).toEqual({ __typename: 'NotFoundError', code: 'NOT_FOUND' });
    expect(unknown).toEqual(foreign);
  });

  it('refuses to record a status on another client’s redemption', async () => {
    const res = await server.gql(RECORD, { input: { redemptionId: acmeRedemptionId, statusCode: 200 } }, globex.key);
    expect(res.data.recordResponseStatus).toMatchObject({ __typename: 'NotFoundError', code: 'NOT_FOUND' });
    const [row] = await server.sql('select status_code from request_token_log where id = $1', [acmeRedemptionId]);
    expect(row.status_code).toBeNull();
  });

  it('inspects another client’s token as TOKEN_NOT_FOUND, showing nothing of it', async () => {
    const INSPECT = `query I($input: InspectRequestTokenInput!) { inspectRequestToken(input: $input) {
      __typename ... on Inspection { redeemable rejectionCode token { id } usesRemaining } } }`;
    const foreign = await server.gql(INSPECT, { input: { jwt: acmeToken.jwt, scope: 's' } }, globex.key);
    expect(foreign.data.inspectRequestToken).toEqual({
      __typename: 'Inspection',
      redeemable: false,
      rejectionCode: 'TOKEN_NOT_FOUND',
      token: null,
      usesRemaining: null,
    });
    const own = await server.gql(INSPECT, { input: { jwt: acmeToken.jwt, scope: 's' } }, acme.key);
    expect(own.data.inspectRequestToken).toMatchObject({ redeemable: true, token: { id: acmeToken.id } });
  });

  it('does not replay another client’s idempotent redemption to a key that repeats its idempotency key', async () => {
    const input = { jwt: acmeToken.jwt, scope: 's', idempotencyKey: 'order-42' };
    const first = await server.gql(REDEEM, { input }, acme.key);
    expect(first.data.redeemRequestToken.__typename).toBe('Redemption');
    const foreign = await withoutConsumption(server, () => server.gql(REDEEM, { input }, globex.key));
    expect(foreign.data.redeemRequestToken).toMatchObject({ __typename: 'TokenRejectedError', code: 'TOKEN_NOT_FOUND', tokenId: null });
  });

  it('refuses to give back a use of another client’s redemption', async () => {
    const res = await withoutConsumption(server, () =>
      server.gql(RECORD, { input: { redemptionId: acmeRedemptionId, statusCode: 503, releaseUse: true } }, globex.key),
    );
    expect(res.data.recordResponseStatus).toMatchObject({ __typename: 'NotFoundError', code: 'NOT_FOUND' });
  });

  it('refuses to issue into another client', async () => {
    const res = await server.gql(CREATE, { input: { scope: 's', clientId: acme.client.id } }, globex.key);
    expect(res.data.createRequestToken.__typename).toBe('ValidationError');
    expect(res.data.createRequestToken.issues).toEqual([{ path: ['input', 'clientId'], message: 'no such client' }]);
  });

  it('does not let forgetUser reach another client’s users', async () => {
    const res = await withoutConsumption(server, () =>
      server.gql('mutation { forgetUser(userId: "alice") { ... on ForgetUserSuccess { revokedTokens anonymisedLogs } } }', {}, globex.key),
    );
    expect(res.data.forgetUser).toEqual({ revokedTokens: 0, anonymisedLogs: 0 });
  });

  it('lets an admin key see every tenant and issue into a chosen client', async () => {
    const all = await server.gql(TOKENS);
    expect(all.data.requestTokens.edges.map((e: any) => e.node.id)).toContain(acmeToken.id);
    const res = await server.gql(CREATE, { input: { scope: 'x', clientId: globex.client.id } });
    const [row] = await server.sql('select client_id from request_token where id = $1', [res.data.createRequestToken.token.id]);
    expect(String(row.client_id)).toBe(globex.client.id);
    const unknown = await server.gql(CREATE, { input: { scope: 'x', clientId: '424242' } });
    expect(unknown.data.createRequestToken.__typename).toBe('ValidationError');
  });

  it('issues admin tokens into the default client (id 1) unless told otherwise', async () => {
    const res = await server.gql(CREATE, { input: { scope: 'x' } });
    const [row] = await server.sql('select client_id from request_token where id = $1', [res.data.createRequestToken.token.id]);
    expect(String(row.client_id)).toBe('1');
  });
});

describe('permissions', () => {
  const cases: [string, string[], string, Record<string, unknown>, string][] = [
    ['issuing without "issue"', ['redeem', 'read'], CREATE, { input: { scope: 's' } }, 'createRequestToken'],
    ['revoking without "issue"', ['redeem', 'read'], REVOKE, { id: '1' }, 'revokeRequestToken'],
    ['redeeming without "redeem"', ['issue', 'read'], REDEEM, { input: { jwt: 'JWT', scope: 's' } }, 'redeemRequestToken'],
    ['recording a status without "redeem"', ['issue', 'read'], RECORD, { input: { redemptionId: 'LOG', statusCode: 200 } }, 'recordResponseStatus'],
    ['reading tokens without "read"', ['issue', 'redeem'], TOKENS, {}, 'requestTokens'],
    ['reading one token without "read"', ['issue', 'redeem'], TOKEN, { id: 'ID' }, 'requestToken'],
    ['reading logs without "read"', ['issue', 'redeem'], LOGS, {}, 'requestTokenLogs'],
    [
      'reading logs through a redemption without "read"',
      ['redeem'],
      'mutation R($input: RedeemRequestTokenInput!) { redeemRequestToken(input: $input) { ... on Redemption { token { logs { totalCount } } } } }',
      { input: { jwt: 'JWT', scope: 's' } },
      'redeemRequestToken',
    ],
    ['listing clients without "admin"', ['issue', 'redeem', 'read'], '{ apiClients { id } }', {}, 'apiClients'],
    ['listing keys without "admin"', ['issue', 'redeem', 'read'], '{ apiKeys { id } }', {}, 'apiKeys'],
    ['listing signing keys without "admin"', ['issue', 'redeem', 'read'], '{ signingKeys { kid } }', {}, 'signingKeys'],
    [
      'creating a client without "admin"',
      ['issue', 'redeem', 'read'],
      'mutation { createApiClient(input: { name: "evil" }) { __typename } }',
      {},
      'createApiClient',
    ],
    [
      'creating a key without "admin"',
      ['issue', 'redeem', 'read'],
      'mutation { createApiKey(input: { name: "evil", permissions: [ADMIN] }) { __typename } }',
      {},
      'createApiKey',
    ],
    [
      'rotating the signing key without "admin"',
      ['issue', 'redeem', 'read'],
      'mutation { rotateSigningKey { __typename } }',
      {},
      'rotateSigningKey',
    ],
    ['forgetting a user without "issue"', ['redeem', 'read'], 'mutation { forgetUser(userId: "alice") { __typename } }', {}, 'forgetUser'],
  ];

  it.each(cases)('answers %s with 403 FORBIDDEN, running nothing', async (_name, permissions, query, variables, field) => {
    const { key } = await keyFor(server, acme.client.id, permissions);
    const filled = JSON.parse(
      JSON.stringify(variables)
        .replace('"JWT"', JSON.stringify(acmeToken.jwt))
        .replace('"LOG"', JSON.stringify(acmeRedemptionId))
        .replace('"ID"', JSON.stringify(acmeToken.id)),
    );
    const clientsBefore = await server.sql('select count(*)::int as n from api_client');
    const res = await withoutConsumption(server, () => server.gql(query, filled, key));
    expect(res.status).toBe(403);
    expect(res.errors?.[0].extensions?.code).toBe('FORBIDDEN');
    expect(res.data?.[field] ?? null).toBeNull();
    expect(await server.sql('select count(*)::int as n from api_client')).toEqual(clientsBefore);
  });

  it('denies any field without an explicit rule to every key but admin keys', () => {
    expect(ruleFor('Query', 'someFieldAddedLater')).toBe('admin');
    expect(ruleFor('Mutation', 'someMutationAddedLater')).toBe('admin');
    expect(ruleFor('SomeTypeAddedLater', 'field')).toBe('admin');
  });

  it('refuses revoked and expired keys with 401, consuming nothing', async () => {
    const revoked = await keyFor(server, acme.client.id, ['redeem']);
    await server.gql('mutation R($id: ID!) { revokeApiKey(id: $id) { __typename } }', { id: revoked.id });
    const expired = await keyFor(server, acme.client.id, ['redeem'], { expiresAt: new Date(Date.now() + 1500) });
    await new Promise((r) => setTimeout(r, 1600));
    for (const key of [revoked.key, expired.key]) {
      const res = await withoutConsumption(server, () => server.gql(REDEEM, { input: { jwt: acmeToken.jwt, scope: 's' } }, key));
      expect(res.status).toBe(401);
      expect(res.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
    }
  });

  it('records when a key was last used', async () => {
    const { key, id } = await keyFor(server, acme.client.id, ['read']);
    expect((await server.sql('select last_used_at from api_key where id = $1', [id]))[0].last_used_at).toBeNull();
    await server.gql(TOKENS, {}, key);
    expect((await server.sql('select last_used_at from api_key where id = $1', [id]))[0].last_used_at).toBeInstanceOf(Date);
  });
});

describe('admin operations', () => {
  it('creates a client and a key shown once, lists keys without secrets, and revokes at once', async () => {
    const created = await server.gql('mutation { createApiClient(input: { name: "initech" }) { ... on CreateApiClientSuccess { client { id name } } } }');
    const client = created.data.createApiClient.client;
    expect(client.name).toBe('initech');
    const dup = await server.gql('mutation { createApiClient(input: { name: "initech" }) { __typename ... on ValidationError { issues { message } } } }');
    expect(dup.data.createApiClient.__typename).toBe('ValidationError');

    const keyRes = await server.gql(
      `mutation K($input: CreateApiKeyInput!) { createApiKey(input: $input) {
        __typename ... on CreateApiKeySuccess { key apiKey { id clientId permissions } } ... on ValidationError { issues { path message } } } }`,
      { input: { name: 'initech issuer', clientId: client.id, permissions: ['ISSUE', 'READ'] } },
    );
    const { key, apiKey } = keyRes.data.createApiKey;
    expect(apiKey).toMatchObject({ clientId: client.id, permissions: ['ISSUE', 'READ'] });
    expect(key).toMatch(new RegExp(`^rt_${apiKey.id}_`));

    const noClient = await server.gql(
      'mutation { createApiKey(input: { name: "x", permissions: [ISSUE] }) { __typename ... on ValidationError { issues { path } } } }',
    );
    expect(noClient.data.createApiKey).toEqual({ __typename: 'ValidationError', issues: [{ path: ['input', 'clientId'] }] });

    expect((await server.gql(TOKENS, {}, key)).data.requestTokens.totalCount).toBe(0);
    const listed = await server.gql('query L($c: ID) { apiKeys(clientId: $c) { id name lastUsedAt revokedAt } }', { c: client.id });
    expect(listed.data.apiKeys).toHaveLength(1);
    expect(JSON.stringify(listed)).not.toContain(key.split('_').slice(2).join('_'));
    const [row] = await server.sql('select * from api_key where id = $1', [apiKey.id]);
    expect(JSON.stringify(row)).not.toContain(key.split('_').slice(2).join('_'));

    await server.gql('mutation R($id: ID!) { revokeApiKey(id: $id) { __typename } }', { id: apiKey.id });
    expect((await server.gql(TOKENS, {}, key)).status).toBe(401);
  });

  it('keeps a log of each refusal for the caller’s own reading', async () => {
    const before = await consumption(server);
    const res = await server.gql(LOGS, {}, globex.key);
    expect(res.data.requestTokenLogs.totalCount).toBeGreaterThan(0);
    expect(await consumption(server)).toEqual(before);
  });
});
