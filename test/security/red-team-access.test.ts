import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeProtectedHeader } from 'jose';
import { CREATE, REDEEM } from '../support/operations.js';
import { startTestServer, type TestServer } from '../support/harness.js';
import { hs256, tenantKey, withoutConsumption } from './support.js';

// Attacks by a key that holds some permissions on a tenant and tries to get more out of it: login links from a
// read-only key, token contents through a mutation's result, a JWT re-signed after its key was retired, a bound link
// opened with a parameter repeated. Issue 17, items 1, 3 and 6.

let server: TestServer;
let keys: Record<'read' | 'redeem' | 'issue' | 'issueRead', string>;

beforeAll(async () => {
  server = await startTestServer();
  const read = await tenantKey(server, 'acme', ['read']);
  const { createKey } = await import('../../server/domain/clients.js');
  const make = async (permissions: string[]) =>
    (await createKey({ orm: server.db.orm, tenant: null }, { name: permissions.join('+'), clientId: read.client.id, permissions })).key;
  keys = {
    read: read.key,
    redeem: await make(['redeem']),
    issue: await make(['issue']),
    issueRead: await make(['issue', 'read']),
  };
});
afterAll(() => server?.close());

/** A SESSION token for alice in acme, issued by acme's issuing key. */
async function aliceSession() {
  const res = await server.gql(
    CREATE,
    { input: { scope: 'login', userId: 'alice', loginMode: 'SESSION', maxUses: 5, data: { secret: 'alice-data' } } },
    keys.issue,
  );
  expect(res.data?.createRequestToken?.__typename, JSON.stringify(res)).toBe('CreateRequestTokenSuccess');
  return res.data.createRequestToken as { jwt: string; token: { id: string } };
}

describe('a stored token\'s JWT needs the "issue" permission, on every path (item 1)', () => {
  it('a READ key listing tokens gets no JWT to log in as alice with', async () => {
    await aliceSession();
    const res = await server.gql('{ requestTokens { edges { node { id jwt } } } }', {}, keys.read);
    expect(res.status).toBe(403);
    expect(res.errors?.[0].extensions?.code).toBe('FORBIDDEN');
    expect(JSON.stringify(res)).not.toMatch(/eyJ/);
  });

  it('a READ key asking for one token\'s JWT, or hiding the field in a fragment, is refused', async () => {
    const { token } = await aliceSession();
    const direct = await server.gql('query T($id: ID!) { requestToken(id: $id) { jwt } }', { id: token.id }, keys.read);
    expect(direct.errors?.[0].extensions?.code).toBe('FORBIDDEN');
    const hidden = await server.gql(
      'query T($id: ID!) { requestToken(id: $id) { ...F } } fragment F on RequestToken { ... on RequestToken { j: jwt } }',
      { id: token.id },
      keys.read,
    );
    expect(hidden.errors?.[0].extensions?.code).toBe('FORBIDDEN');
    expect(JSON.stringify(hidden)).not.toMatch(/eyJ/);
  });

  it('a READ key reaching tokens through the log or a JWT look-up gets no JWT either', async () => {
    const { jwt } = await aliceSession();
    const logs = await server.gql('{ requestTokenLogs { edges { node { token { jwt } } } } }', {}, keys.read);
    expect(logs.errors?.[0].extensions?.code).toBe('FORBIDDEN');
    const lookup = await server.gql(
      'query L($jwt: String!) { findRequestTokenByJwt(jwt: $jwt) { ... on RequestTokenLookup { token { jwt } } } }',
      { jwt },
      keys.read,
    );
    expect(lookup.errors?.[0].extensions?.code).toBe('FORBIDDEN');
  });

  it('a REDEEM key gets no JWT out of a redemption or an inspection', async () => {
    const { jwt } = await aliceSession();
    const redeemed = await withoutConsumption(server, () =>
      server.gql(
        'mutation R($input: RedeemRequestTokenInput!) { redeemRequestToken(input: $input) { ... on Redemption { token { jwt } } } }',
        { input: { jwt, scope: 'login' } },
        keys.redeem,
      ),
    );
    expect(redeemed.errors?.[0].extensions?.code).toBe('FORBIDDEN');
    const inspected = await server.gql(
      'query I($input: InspectRequestTokenInput!) { inspectRequestToken(input: $input) { ... on Inspection { token { jwt } } } }',
      { input: { jwt, scope: 'login' } },
      keys.redeem,
    );
    expect(inspected.errors?.[0].extensions?.code).toBe('FORBIDDEN');
  });

  it('an ISSUE-only key revoking a token by id reads neither its data, its user nor its JWT', async () => {
    const { token } = await aliceSession();
    const res = await server.gql(
      'mutation R($id: ID!) { revokeRequestToken(id: $id) { ... on RevokeRequestTokenSuccess { token { id data userId jwt } } } }',
      { id: token.id },
      keys.issue,
    );
    expect(res.errors?.[0].extensions?.code).toBe('FORBIDDEN');
    expect(JSON.stringify(res)).not.toContain('alice');
    // Refused before execution: the token was not revoked either.
    const [row] = await server.sql('select revoked_at from request_token where id = $1', [token.id]);
    expect(row.revoked_at).toBeNull();
    // What the revocation itself tells is open to it.
    const ok = await server.gql(
      'mutation R($id: ID!) { revokeRequestToken(id: $id) { ... on RevokeRequestTokenSuccess { token { id status revokedAt } } } }',
      { id: token.id },
      keys.issue,
    );
    expect(ok.data.revokeRequestToken.token).toMatchObject({ id: token.id, status: 'REVOKED' });
  });

  it('leaves the SDK\'s operations working for least-privilege keys (issue, revoke; inspect, redeem, record a status)', async () => {
    const { createRequestTokenClient } = await import('../../sdk/index.js');
    const issuer = createRequestTokenClient({ url: server.graphqlUrl, apiKey: keys.issue });
    const redeemer = createRequestTokenClient({ url: server.graphqlUrl, apiKey: keys.redeem });
    const issued = await issuer.createRequestToken({ scope: 'sdk', userId: 'alice', loginMode: 'REQUEST', maxUses: 2 });
    expect(issued.__typename).toBe('CreateRequestTokenSuccess');
    if (issued.__typename !== 'CreateRequestTokenSuccess') return;
    expect((await redeemer.inspectRequestToken({ jwt: issued.jwt, scope: 'sdk' })).__typename).toBe('Inspection');
    const redeemed = await redeemer.redeemRequestToken({ jwt: issued.jwt, scope: 'sdk' });
    expect(redeemed).toMatchObject({ __typename: 'Redemption', authenticateAs: 'alice' });
    if (redeemed.__typename !== 'Redemption') return;
    const recorded = await redeemer.recordResponseStatus({ redemptionId: redeemed.id, statusCode: 200 });
    expect(recorded).toMatchObject({ __typename: 'RecordResponseStatusSuccess', log: { statusCode: 200, token: { id: issued.token.id, scope: 'sdk' } } });
    expect(await issuer.revokeRequestToken({ id: issued.token.id })).toMatchObject({
      __typename: 'RevokeRequestTokenSuccess',
      token: { id: issued.token.id, status: 'REVOKED' },
    });
  });

  it('still hands the JWT to the key that issues, and to a key that may issue and read', async () => {
    const { token, jwt } = await aliceSession();
    const read = await server.gql('query T($id: ID!) { requestToken(id: $id) { jwt data } }', { id: token.id }, keys.issueRead);
    expect(read.data.requestToken).toEqual({ jwt, data: { secret: 'alice-data' } });
  });
});

describe('retiring a signing key kills its tokens (item 3)', () => {
  const rotate = () => server.gql('mutation { rotateSigningKey { ... on RotateSigningKeySuccess { key { kid } } } }');
  const retire = (kid: string) => server.gql('mutation R($k: String!) { retireSigningKey(kid: $k) { __typename } }', { k: kid });

  it('does not re-sign a token of a retired key: its jwt field answers a typed error, no JWT', async () => {
    await rotate();
    const { token, jwt } = await aliceSession();
    const kid = decodeProtectedHeader(jwt).kid!;
    await rotate();
    expect((await retire(kid)).data.retireSigningKey.__typename).toBe('RetireSigningKeySuccess');
    const res = await server.gql('query T($id: ID!) { requestToken(id: $id) { id jwt } }', { id: token.id });
    expect(res.errors?.[0].extensions?.code).toBe('SIGNING_KEY_RETIRED');
    expect((res.errors?.[0] as { path?: unknown }).path).toEqual(['requestToken', 'jwt']);
    expect(JSON.stringify(res)).not.toMatch(/eyJ/);
    // The token's other fields stay readable.
    const other = await server.gql('query T($id: ID!) { requestToken(id: $id) { id userId } }', { id: token.id });
    expect(other.data.requestToken).toEqual({ id: token.id, userId: 'alice' });
  });

  it('refuses a JWT signed by another valid key than the one the token was issued with, consuming nothing', async () => {
    const { token, jwt } = await aliceSession();
    const issuedWith = decodeProtectedHeader(jwt).kid!;
    expect(issuedWith).not.toBe('default');
    // The same claims signed by the default key (REQUEST_TOKEN_SECRET), which still verifies.
    const claims = JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());
    const { TEST_SECRET } = await import('../support/harness.js');
    const resigned = hs256(TEST_SECRET, { alg: 'HS256', typ: 'JWT', kid: 'default' }, claims);
    const res = await withoutConsumption(server, () => server.gql(REDEEM, { input: { jwt: resigned, scope: 'login' } }, keys.redeem));
    expect(res.data.redeemRequestToken).toMatchObject({ __typename: 'TokenRejectedError', code: 'TOKEN_SIGNATURE_INVALID', tokenId: token.id });
    const inspected = await server.gql(
      'query I($input: InspectRequestTokenInput!) { inspectRequestToken(input: $input) { ... on Inspection { redeemable rejectionCode } } }',
      { input: { jwt: resigned, scope: 'login' } },
      keys.redeem,
    );
    expect(inspected.data.inspectRequestToken).toEqual({ redeemable: false, rejectionCode: 'TOKEN_SIGNATURE_INVALID' });
    // The genuine JWT still redeems.
    expect((await server.gql(REDEEM, { input: { jwt, scope: 'login' } }, keys.redeem)).data.redeemRequestToken.__typename).toBe('Redemption');
  });
});

describe('a bound parameter carries exactly the target\'s values (item 6)', () => {
  const target = 'https://app.example/unsubscribe?list=weekly';
  let jwt: string;
  beforeAll(async () => {
    const res = await server.gql(CREATE, { input: { scope: 'unsub', targetUrl: target, maxUses: 10 } }, keys.issue);
    jwt = res.data.createRequestToken.jwt;
  });
  const redeemAt = (url: string) => server.gql(REDEEM, { input: { jwt, scope: 'unsub', url } }, keys.redeem);

  it.each([
    'https://app.example/unsubscribe?list=daily&list=weekly',
    'https://app.example/unsubscribe?list=weekly&list=daily',
    'https://app.example/unsubscribe?list=weekly&list=weekly',
    'https://app.example/unsubscribe?list=',
    'https://app.example/unsubscribe',
  ])('refuses %s, consuming nothing', async (url) => {
    const res = await withoutConsumption(server, () => redeemAt(url));
    expect(res.data.redeemRequestToken).toMatchObject({ code: 'TARGET_URL_MISMATCH' });
  });

  it('still redeems the exact link and the link with extra unbound parameters', async () => {
    expect((await redeemAt(target)).data.redeemRequestToken.__typename).toBe('Redemption');
    expect((await redeemAt(`${target}&utm_source=mail&rt=x`)).data.redeemRequestToken.__typename).toBe('Redemption');
  });
});
