import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeCursor } from '../server/domain/paging.js';
import { parseId } from '../server/domain/ids.js';
import { startTestServer, type TestServer } from './support/harness.js';
import { issue } from './support/operations.js';

/**
 * Row ids are bigints. An id no row can have (past 9223372036854775807, 20 digits, negative, zero, not a number) is
 * "not found" (or a ValidationError where the input is plainly wrong), never an unexpected error, wherever an id
 * comes in: arguments, filters, inputs, cursors and a signed JWT's jti.
 */

const BAD_IDS = ['9223372036854775808', '9999999999999999999', '99999999999999999999', '-1', '0', '01', 'abc', '1e3', ' 1', ''];

let server: TestServer;
let realId: string;

beforeAll(async () => {
  server = await startTestServer();
  realId = (await issue(server, { scope: 'ids' })).token.id;
});
afterAll(() => server?.close());

/** Runs an operation and fails on any GraphQL error (an unexpected error included); returns its data. */
async function data(query: string, variables: Record<string, unknown>) {
  const res = await server.gql(query, variables);
  expect(res.errors, JSON.stringify(res.errors)).toBeUndefined();
  expect(res.status).toBe(200);
  return res.data;
}

describe('the shared id parser', () => {
  it('takes positive bigints written plainly and nothing else', () => {
    expect(parseId('1')).toBe('1');
    expect(parseId('9223372036854775807')).toBe('9223372036854775807');
    for (const id of BAD_IDS) expect(parseId(id), id).toBeNull();
    expect(parseId(null)).toBeNull();
    expect(parseId({})).toBeNull();
  });
});

describe.each(BAD_IDS)('the id %j', (id) => {
  it('is a missing token for requestToken', async () => {
    expect((await data(`query($id: ID!) { requestToken(id: $id) { id } }`, { id })).requestToken).toBeNull();
  });

  it('is NOT_FOUND for revokeRequestToken', async () => {
    const res = await data(`mutation($id: ID!) { revokeRequestToken(id: $id) { __typename ... on Error { code } } }`, { id });
    expect(res.revokeRequestToken).toEqual({ __typename: 'NotFoundError', code: 'NOT_FOUND' });
  });

  it('is NOT_FOUND for recordResponseStatus, with or without releaseUse', async () => {
    for (const releaseUse of [false, true]) {
      const res = await data(
        `mutation($i: RecordResponseStatusInput!) { recordResponseStatus(input: $i) { __typename ... on Error { code } } }`,
        { i: { redemptionId: id, statusCode: 503, releaseUse } },
      );
      expect(res.recordResponseStatus).toEqual({ __typename: 'NotFoundError', code: 'NOT_FOUND' });
    }
  });

  it('matches no log rows in requestTokenLogs(filter: { tokenId })', async () => {
    const res = await data(`query($id: ID) { requestTokenLogs(filter: { tokenId: $id }) { totalCount edges { node { id } } } }`, { id });
    expect(res.requestTokenLogs).toEqual({ totalCount: 0, edges: [] });
  });

  it('is a bad cursor for requestTokens and requestTokenLogs', async () => {
    for (const field of ['requestTokens', 'requestTokenLogs']) {
      const res = await server.gql(`query($after: String) { ${field}(after: $after) { totalCount } }`, { after: encodeCursor(id) });
      expect(res.errors?.[0].extensions?.code, JSON.stringify(res.errors)).toBe('BAD_USER_INPUT');
    }
  });

  it('is no such client for createRequestToken, createRequestTokens and createApiKey', async () => {
    const one = await data(
      `mutation($i: CreateRequestTokenInput!) { createRequestToken(input: $i) { __typename ... on ValidationError { issues { path message } } } }`,
      { i: { scope: 'ids', clientId: id } },
    );
    expect(one.createRequestToken).toEqual({
      __typename: 'ValidationError',
      issues: [{ path: ['input', 'clientId'], message: 'no such client' }],
    });
    const many = await data(
      `mutation($i: [CreateRequestTokenInput!]!) { createRequestTokens(inputs: $i) { __typename ... on ValidationError { issues { path message } } } }`,
      { i: [{ scope: 'ids', clientId: id }] },
    );
    expect(many.createRequestTokens).toEqual({
      __typename: 'ValidationError',
      issues: [{ path: ['inputs', '0', 'clientId'], message: 'no such client' }],
    });
    const key = await data(
      `mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { __typename ... on ValidationError { issues { path message } } } }`,
      { i: { name: 'k', permissions: ['READ'], clientId: id } },
    );
    expect(key.createApiKey).toEqual({
      __typename: 'ValidationError',
      issues: [{ path: ['input', 'clientId'], message: 'no such client' }],
    });
  });

  it('lists no keys for apiKeys(clientId) and revokes no key for revokeApiKey', async () => {
    expect((await data(`query($id: ID) { apiKeys(clientId: $id) { id } }`, { id })).apiKeys).toEqual([]);
    const res = await data(`mutation($id: ID!) { revokeApiKey(id: $id) { __typename ... on Error { code } } }`, { id });
    expect(res.revokeApiKey).toEqual({ __typename: 'NotFoundError', code: 'NOT_FOUND' });
  });

  it('is TOKEN_NOT_FOUND as the jti of a genuinely signed JWT, for inspection, lookup and redemption', async () => {
    const jwt = await server.services.codec.sign({ jti: id, sub: 'ids', mod: 'n', max: 1, iat: Math.floor(Date.now() / 1000) });
    const inspected = await data(
      `query($i: InspectRequestTokenInput!) { inspectRequestToken(input: $i) { __typename ... on Inspection { redeemable rejectionCode } } }`,
      { i: { jwt, scope: 'ids' } },
    );
    expect(inspected.inspectRequestToken).toEqual({ __typename: 'Inspection', redeemable: false, rejectionCode: 'TOKEN_NOT_FOUND' });
    const found = await data(`query($jwt: String!) { findRequestTokenByJwt(jwt: $jwt) { __typename ... on Error { code } } }`, { jwt });
    expect(found.findRequestTokenByJwt).toEqual({ __typename: 'NotFoundError', code: 'NOT_FOUND' });
    const redeemed = await data(
      `mutation($i: RedeemRequestTokenInput!) { redeemRequestToken(input: $i) { __typename ... on Error { code } } }`,
      { i: { jwt, scope: 'ids' } },
    );
    expect(redeemed.redeemRequestToken).toEqual({ __typename: 'TokenRejectedError', code: 'TOKEN_NOT_FOUND' });
  });
});

describe('a real id', () => {
  it('still works everywhere the bad ones were refused (control)', async () => {
    expect((await data(`query($id: ID!) { requestToken(id: $id) { id } }`, { id: realId })).requestToken).toEqual({ id: realId });
    const res = await data(`mutation($id: ID!) { revokeRequestToken(id: $id) { __typename } }`, { id: realId });
    expect(res.revokeRequestToken.__typename).toBe('RevokeRequestTokenSuccess');
  });
});
