import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RequestToken } from '../../server/database/entities/request-token.js';
import { RequestTokenLog } from '../../server/database/entities/request-token-log.js';
import { tenantEm } from '../../server/database/tenant.js';
import { startTestServer, type TestServer } from '../support/harness.js';
import { CREATE, REDEEM } from '../support/operations.js';
import { tenantKey } from './support.js';

/**
 * Two tenants, each with tokens (redeemed, refused, revoked, with users and data) and log rows. Every query and listing
 * runs with each tenant's key; the answer may name the caller's rows only. Rows are told apart by (type, id) and by
 * markers in scopes and user ids, so a leak shows whichever field it comes through.
 */

interface Tenant {
  name: string;
  key: string;
  tokenIds: Set<string>;
  logIds: Set<string>;
  jwts: string[];
  scope: string;
  user: string;
}

let server: TestServer;
const tenants: Tenant[] = [];

const TOKEN_FIELDS = `__typename id scope userId status logs(first: 3) { totalCount edges { node { __typename id userId } } }`;
const LOG_FIELDS = `__typename id userId token { __typename id scope userId }`;

beforeAll(async () => {
  server = await startTestServer();
  for (const name of ['tenant-a', 'tenant-b']) {
    const { key } = await tenantKey(server, name, ['issue', 'redeem', 'read']);
    const tenant: Tenant = {
      name,
      key,
      tokenIds: new Set(),
      logIds: new Set(),
      jwts: [],
      scope: `${name}-scope`,
      user: `${name}-user`,
    };
    for (let i = 0; i < 3; i++) {
      const created = await server.gql(CREATE, { input: { scope: tenant.scope, userId: tenant.user, maxUses: 2, data: { who: name } } }, key);
      const { jwt, token } = created.data.createRequestToken;
      tenant.tokenIds.add(token.id);
      tenant.jwts.push(jwt);
      const ok = await server.gql(REDEEM, { input: { jwt, scope: tenant.scope } }, key);
      tenant.logIds.add(ok.data.redeemRequestToken.id);
      const refused = await server.gql(REDEEM, { input: { jwt, scope: 'wrong-scope' } }, key);
      tenant.logIds.add(refused.data.redeemRequestToken.logId);
    }
    tenants.push(tenant);
  }
  await server.services.refusalLog.flush();
});
afterAll(() => server?.close());

/** Every (typename, id) and every string in an answer. */
function namesIn(value: unknown, found = { rows: [] as [string, string][], strings: [] as string[] }) {
  if (Array.isArray(value)) for (const item of value) namesIn(item, found);
  else if (value && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    if (typeof record.__typename === 'string' && typeof record.id === 'string') found.rows.push([record.__typename, record.id]);
    for (const item of Object.values(record)) namesIn(item, found);
  } else if (typeof value === 'string') found.strings.push(value);
  return found;
}

function expectOnlyOwn(answer: unknown, own: Tenant, other: Tenant) {
  const { rows, strings } = namesIn(answer);
  for (const [type, id] of rows) {
    if (type === 'RequestToken') expect(other.tokenIds.has(id) && !own.tokenIds.has(id), `token ${id} of ${other.name}`).toBe(false);
    if (type === 'RequestTokenLog') expect(other.logIds.has(id) && !own.logIds.has(id), `log ${id} of ${other.name}`).toBe(false);
  }
  expect(strings.filter((s) => s.includes(other.name))).toEqual([]);
}

/** Each operation, given the caller and the other tenant; returns the answer's data. */
const OPERATIONS: [string, (own: Tenant, other: Tenant) => Promise<unknown>][] = [
  ['requestTokens', (own) => gql(own, `{ requestTokens(first: 10) { totalCount edges { node { ${TOKEN_FIELDS} } } } }`)],
  [
    'requestTokens filtered by the other tenant’s scope and user',
    (own, other) =>
      gql(own, `query($s: String, $u: String) { a: requestTokens(filter: { scope: $s }) { totalCount edges { node { __typename id } } }
        b: requestTokens(filter: { userId: $u }) { totalCount edges { node { __typename id } } } }`, { s: other.scope, u: other.user }).then(
        (data: any) => {
          expect([data.a.totalCount, data.b.totalCount]).toEqual([0, 0]);
          return data;
        },
      ),
  ],
  ['requestTokens by status', (own) => gql(own, `{ requestTokens(filter: { status: ACTIVE }) { totalCount edges { node { ${TOKEN_FIELDS} } } } }`)],
  [
    'requestToken with each of the other tenant’s ids',
    (own, other) => Promise.all([...other.tokenIds].map((id) => gql(own, `query($id: ID!) { requestToken(id: $id) { ${TOKEN_FIELDS} } }`, { id }))),
  ],
  ['requestTokenLogs', (own) => gql(own, `{ requestTokenLogs(first: 100) { totalCount edges { node { ${LOG_FIELDS} } } } }`)],
  [
    'requestTokenLogs filtered by the other tenant’s token, scope and user',
    (own, other) =>
      gql(own, `query($t: ID, $s: String, $u: String) { a: requestTokenLogs(filter: { tokenId: $t }) { totalCount edges { node { ${LOG_FIELDS} } } }
        b: requestTokenLogs(filter: { scope: $s }) { totalCount edges { node { __typename id } } }
        c: requestTokenLogs(filter: { userId: $u, failed: true }) { totalCount edges { node { __typename id } } } }`,
        { t: [...other.tokenIds][0], s: other.scope, u: other.user }).then((data: any) => {
        expect([data.a.totalCount, data.b.totalCount, data.c.totalCount]).toEqual([0, 0, 0]);
        return data;
      }),
  ],
  [
    'nested pages: logs → token → logs',
    (own) => gql(own, `{ requestTokenLogs(first: 12) { edges { node { __typename id token { __typename id logs(first: 3) { totalCount edges { node { __typename id } } } } } } } }`),
  ],
  [
    'findRequestTokenByJwt with the other tenant’s JWTs',
    (own, other) => Promise.all(other.jwts.map((jwt) => gql(own, `query($jwt: String!) { findRequestTokenByJwt(jwt: $jwt) {
      __typename ... on RequestTokenLookup { token { ${TOKEN_FIELDS} } } ... on Error { code } } }`, { jwt }))),
  ],
  [
    'inspectRequestToken with the other tenant’s JWTs',
    (own, other) => Promise.all(other.jwts.map((jwt) => gql(own, `query($i: InspectRequestTokenInput!) { inspectRequestToken(input: $i) {
      __typename ... on Inspection { redeemable rejectionCode token { ${TOKEN_FIELDS} } } } }`, { i: { jwt, scope: other.scope } }))),
  ],
  ['usageStats', (own) => gql(own, `{ usageStats(bucket: DAY) { totals { issued redemptions refusals } scopes { scope issued redemptions refusals } } }`)],
  [
    'revokeRequestToken of the other tenant’s tokens',
    (own, other) => Promise.all([...other.tokenIds].map((id) => gql(own, `mutation($id: ID!) { revokeRequestToken(id: $id) {
      __typename ... on RevokeRequestTokenSuccess { token { ${TOKEN_FIELDS} } } ... on Error { code } } }`, { id }))),
  ],
  [
    'recordResponseStatus on the other tenant’s log rows',
    (own, other) => Promise.all([...other.logIds].map((id) => gql(own, `mutation($i: RecordResponseStatusInput!) { recordResponseStatus(input: $i) {
      __typename ... on RecordResponseStatusSuccess { log { ${LOG_FIELDS} } } ... on Error { code } } }`, { i: { redemptionId: id, statusCode: 500, releaseUse: true } }))),
  ],
  [
    'revokeRequestTokens and forgetUser aimed at the other tenant’s scope and user',
    (own, other) => gql(own, `mutation($s: String, $u: String!) { revokeRequestTokens(filter: { scope: $s }) { __typename ... on RevokeRequestTokensSuccess { revokedCount } }
      forgetUser(userId: $u) { __typename ... on ForgetUserSuccess { revokedTokens anonymisedLogs } } }`, { s: other.scope, u: other.user }).then(
        (data: any) => {
          expect(data.revokeRequestTokens.revokedCount).toBe(0);
          expect([data.forgetUser.revokedTokens, data.forgetUser.anonymisedLogs]).toEqual([0, 0]);
          return data;
        },
      ),
  ],
];

async function gql(own: Tenant, query: string, variables: Record<string, unknown> = {}) {
  const res = await server.gql(query, variables, own.key);
  expect(res.errors, JSON.stringify(res.errors)).toBeUndefined();
  return res.data;
}

describe('every query and listing, with two tenants’ keys', () => {
  for (const [name, run] of OPERATIONS) {
    it(`${name}: each tenant sees its own rows only`, async () => {
      for (const [own, other] of [[tenants[0], tenants[1]], [tenants[1], tenants[0]]]) {
        expectOnlyOwn(await run(own, other), own, other);
      }
    });
  }

  it('counts exactly the caller’s rows, and the walk changed nothing of the other tenant', async () => {
    for (const [own, other] of [[tenants[0], tenants[1]], [tenants[1], tenants[0]]]) {
      const data = (await gql(own, `{ requestTokens { totalCount } requestTokenLogs { totalCount } }`)) as any;
      expect(data.requestTokens.totalCount).toBe(own.tokenIds.size);
      expect(data.requestTokenLogs.totalCount).toBe(own.logIds.size);
      // Not revoked, forgotten or released by the other tenant's attempts.
      const rows = await server.sql(
        `select count(*)::int as n from request_token where id = any($1::bigint[]) and revoked_at is null and user_id = $2 and used_to_date = 1`,
        [[...other.tokenIds], other.user],
      );
      expect(rows[0].n).toBe(other.tokenIds.size);
      const logs = await server.sql(
        `select count(*)::int as n from request_token_log where id = any($1::bigint[]) and status_code is null and released_at is null`,
        [[...other.logIds]],
      );
      expect(logs[0].n).toBe(other.logIds.size);
    }
  });

  it('an admin key sees both tenants', async () => {
    const res = await server.gql(`{ requestTokens(first: 100) { totalCount } }`);
    expect(res.data.requestTokens.totalCount).toBe(tenants[0].tokenIds.size + tenants[1].tokenIds.size);
  });
});

describe('the tenant filter', () => {
  it('refuses to run a query on an EntityManager that was given no tenant', async () => {
    const em = server.db.orm.em.fork();
    await expect(em.find(RequestToken, {})).rejects.toThrow(/No arguments provided for filter 'tenant'/);
    await expect(em.count(RequestTokenLog, {})).rejects.toThrow(/No arguments provided for filter 'tenant'/);
  });

  it('confines finds, counts and updates to the tenant it was given', async () => {
    const [a, b] = tenants;
    const clientOf = async (t: Tenant) =>
      String((await server.sql('select client_id from request_token where id = $1', [[...t.tokenIds][0]]))[0].client_id);
    const em = tenantEm(server.db.orm, await clientOf(a));
    const found = await em.find(RequestToken, { id: { $in: [...a.tokenIds, ...b.tokenIds] } });
    expect(found.map((t) => t.id).sort()).toEqual([...a.tokenIds].sort());
    expect(await em.count(RequestTokenLog, {})).toBe(a.logIds.size);
    expect(await em.nativeUpdate(RequestToken, { id: { $in: [...b.tokenIds] } }, { kid: 'x' })).toBe(0);
  });
});
