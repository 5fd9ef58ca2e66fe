import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CREATE, RECORD, REDEEM } from '../support/operations.js';
import { startTestServer, type TestServer } from '../support/harness.js';
import { rawRequest } from '../support/raw-http.js';
import { keyFor, withoutConsumption } from './support.js';

let server: TestServer;
let token: { id: string; jwt: string };
let logId: string;

beforeAll(async () => {
  server = await startTestServer();
  const res = await server.gql(CREATE, { input: { scope: 's', maxUses: 100, targetUrl: 'https://ok.example/page' } });
  token = { id: res.data.createRequestToken.token.id, jwt: res.data.createRequestToken.jwt };
  const redeemed = await server.gql(REDEEM, { input: { jwt: token.jwt, scope: 's', url: 'https://ok.example/page' } });
  logId = redeemed.data.redeemRequestToken.id;
});
afterAll(() => server?.close());

/** POSTs a raw body. */
async function post(body: string, headers: Record<string, string> = {}) {
  const res = await fetch(server.graphqlUrl, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      // GraphQL over HTTP: with this media type, requests that fail validation are answered 400.
      accept: 'application/graphql-response+json',
      authorization: `Bearer ${server.apiKey}`,
      ...headers,
    },
    body,
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: (() => { try { return JSON.parse(text); } catch { return null; } })() };
}

/** Refused before execution: no data at all, and an error naming the limit. */
function refusedBefore(res: { json: any; text: string }, limit: RegExp) {
  expect(res.json?.data ?? null, res.text.slice(0, 300)).toBeNull();
  expect(res.json?.errors?.[0]?.message).toMatch(limit);
}

const NESTED = (depth: number) => {
  let selection = 'id';
  for (let i = 0; i < depth; i++) selection = `token { logs { edges { node { ${selection} } } } }`;
  return `query { requestTokenLogs { edges { node { ${selection} } } } }`;
};

describe('query limits (graphql-armor)', () => {
  it('refuses a query nested too deep, before running it', async () => {
    refusedBefore(await post(JSON.stringify({ query: NESTED(4) })), /depth|cost/i);
    // Control: a reasonable depth runs.
    expect((await post(JSON.stringify({ query: NESTED(1) }))).json.data.requestTokenLogs).toBeTruthy();
  });

  it('refuses the same depth hidden in fragments', async () => {
    const query = `query { requestTokenLogs { edges { node { ...A } } } }
      fragment A on RequestTokenLog { token { logs { edges { node { ...B } } } } }
      fragment B on RequestTokenLog { token { logs { edges { node { ...C } } } } }
      fragment C on RequestTokenLog { token { logs { edges { node { ...D } } } } }
      fragment D on RequestTokenLog { token { logs { edges { node { id } } } } }`;
    refusedBefore(await post(JSON.stringify({ query })), /depth|cost/i);
  });

  it('refuses alias abuse: 50 redemptions in one request consume nothing', async () => {
    const aliases = Array.from({ length: 50 }, (_, i) => `r${i}: redeemRequestToken(input: $input) { __typename }`).join('\n');
    const res = await withoutConsumption(server, () =>
      post(JSON.stringify({ query: `mutation M($input: RedeemRequestTokenInput!) { ${aliases} }`, variables: { input: { jwt: token.jwt, scope: 's', url: 'https://ok.example/page' } } })),
    );
    refusedBefore(res, /alias/i);
  });

  it('refuses aliases hidden in fragments (and fragments spread many times)', async () => {
    const aliases = Array.from({ length: 6 }, (_, i) => `a${i}: redeemRequestToken(input: $input) { __typename }`).join('\n');
    const query = `mutation M($input: RedeemRequestTokenInput!) { ...F ...F ...G }
      fragment F on Mutation { ${aliases} }
      fragment G on Mutation { ${aliases.replaceAll('a', 'b')} }`;
    const res = await withoutConsumption(server, () =>
      post(JSON.stringify({ query, variables: { input: { jwt: token.jwt, scope: 's', url: 'https://ok.example/page' } } })),
    );
    refusedBefore(res, /alias/i);
  });

  it('refuses batched requests (a JSON array), consuming nothing', async () => {
    const one = { query: REDEEM, variables: { input: { jwt: token.jwt, scope: 's', url: 'https://ok.example/page' } } };
    const res = await withoutConsumption(server, () => post(JSON.stringify([one, one, one])));
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.text).not.toContain('Redemption');
  });

  it('refuses too many directives and too many tokens', async () => {
    const directives = await post(JSON.stringify({ query: `{ requestTokens { totalCount ${'@include(if: true) '.repeat(20)} } }` }));
    refusedBefore(directives, /directives/i);
    const tokens = await post(JSON.stringify({ query: `{ requestTokens { ${'totalCount '.repeat(3000)} } }` }));
    refusedBefore(tokens, /token/i);
  });

  it('gives no field suggestions', async () => {
    const res = await post(JSON.stringify({ query: '{ requestTokns { totalCount } }' }));
    expect(res.status).toBe(400);
    expect(res.text).not.toMatch(/did you mean/i);
  });
});

describe('transport', () => {
  it('answers 413 to a body over the limit, consuming nothing', async () => {
    // The token is valid and has uses left: a server that read the body would redeem it (and the check would fail).
    const res = await withoutConsumption(server, () =>
      rawRequest(server.graphqlUrl, {
        headers: { 'content-type': 'application/json', authorization: `Bearer ${server.apiKey}` },
        body: JSON.stringify({
          query: REDEEM,
          variables: { input: { jwt: token.jwt, scope: 's', url: 'https://ok.example/page' } },
          extensions: { pad: 'x'.repeat(300 * 1024) },
        }),
      }),
    );
    expect(res.status).toBe(413);
    expect(JSON.parse(res.text).errors[0].extensions.code).toBe('PAYLOAD_TOO_LARGE');
  });

  it.each(['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x'])(
    'refuses a POST as %s (no CSRF through simple requests), consuming nothing',
    async (type) => {
      const body = JSON.stringify({ query: REDEEM, variables: { input: { jwt: token.jwt, scope: 's', url: 'https://ok.example/page' } } });
      const res = await withoutConsumption(server, () => post(body, { 'content-type': type }));
      expect(res.status).toBe(415);
    },
  );

  it('refuses a mutation over GET, consuming nothing', async () => {
    const url = new URL(server.graphqlUrl);
    url.searchParams.set('query', REDEEM);
    url.searchParams.set('variables', JSON.stringify({ input: { jwt: token.jwt, scope: 's', url: 'https://ok.example/page' } }));
    const res = await withoutConsumption(server, () =>
      fetch(url, { headers: { authorization: `Bearer ${server.apiKey}`, accept: 'application/json' } }),
    );
    expect(res.status).toBe(405);
  });

  it('answers queries over GET', async () => {
    const url = new URL(server.graphqlUrl);
    url.searchParams.set('query', '{ requestTokens { totalCount } }');
    const res = await fetch(url, { headers: { authorization: `Bearer ${server.apiKey}`, accept: 'application/json' } });
    expect(res.status).toBe(200);
  });
});

// Every string input of the API, with a valid value for the rest of its operation.
const STRING_INPUTS: [string, string, (v: string) => Record<string, unknown>, string][] = [
  ['createRequestToken.scope', CREATE, (v) => ({ input: { scope: v } }), 'createRequestToken'],
  ['createRequestToken.targetUrl', CREATE, (v) => ({ input: { scope: 's', targetUrl: `https://ok.example/${v}` } }), 'createRequestToken'],
  ['createRequestToken.userId', CREATE, (v) => ({ input: { scope: 's', userId: v } }), 'createRequestToken'],
  ['createRequestToken.clientId', CREATE, (v) => ({ input: { scope: 's', clientId: v } }), 'createRequestToken'],
  ['redeemRequestToken.jwt', REDEEM, (v) => ({ input: { jwt: `${v}`, scope: 's' } }), 'redeemRequestToken'],
  ['redeemRequestToken.scope', REDEEM, (v) => ({ input: { jwt: 'JWT', scope: `s${v}`, url: 'https://ok.example/page' } }), 'redeemRequestToken'],
  ['redeemRequestToken.url', REDEEM, (v) => ({ input: { jwt: 'JWT', scope: 's', url: `https://ok.example/page?x=${v}` } }), 'redeemRequestToken'],
  ['redeemRequestToken.userId', REDEEM, (v) => ({ input: { jwt: 'JWT', scope: 's', url: 'https://ok.example/page', userId: v } }), 'redeemRequestToken'],
  ['redeemRequestToken.clientIp', REDEEM, (v) => ({ input: { jwt: 'JWT', scope: 's', url: 'https://ok.example/page', clientIp: `203.0.113.9${v}` } }), 'redeemRequestToken'],
  ['redeemRequestToken.userAgent', REDEEM, (v) => ({ input: { jwt: 'JWT', scope: 's', url: 'https://ok.example/page', userAgent: `Mozilla${v}` } }), 'redeemRequestToken'],
  ['redeemRequestToken.idempotencyKey', REDEEM, (v) => ({ input: { jwt: 'JWT', scope: 's', url: 'https://ok.example/page', idempotencyKey: `k${v}` } }), 'redeemRequestToken'],
  ['inspectRequestToken.scope', 'query I($input: InspectRequestTokenInput!) { inspectRequestToken(input: $input) { __typename } }', (v) => ({ input: { jwt: 'JWT', scope: `s${v}` } }), 'inspectRequestToken'],
  ['recordResponseStatus.redemptionId', RECORD, (v) => ({ input: { redemptionId: `LOG${v}`, statusCode: 200 } }), 'recordResponseStatus'],
  ['revokeRequestToken.id', 'mutation R($id: ID!) { revokeRequestToken(id: $id) { __typename } }', (v) => ({ id: `ID${v}` }), 'revokeRequestToken'],
  ['requestToken.id', 'query Q($id: ID!) { requestToken(id: $id) { id } }', (v) => ({ id: `ID${v}` }), 'requestToken'],
  ['requestTokens.filter.scope', 'query Q($s: String) { requestTokens(filter: { scope: $s }) { totalCount } }', (v) => ({ s: v }), 'requestTokens'],
  ['requestTokens.after', 'query Q($a: String) { requestTokens(after: $a) { totalCount } }', (v) => ({ a: v }), 'requestTokens'],
  ['requestTokenLogs.filter.userId', 'query Q($u: String) { requestTokenLogs(filter: { userId: $u }) { totalCount } }', (v) => ({ u: v }), 'requestTokenLogs'],
  ['forgetUser.userId', 'mutation F($u: String!) { forgetUser(userId: $u) { __typename } }', (v) => ({ u: v }), 'forgetUser'],
  ['createApiClient.name', 'mutation C($n: String!) { createApiClient(input: { name: $n }) { __typename } }', (v) => ({ n: v }), 'createApiClient'],
  ['createApiKey.name', 'mutation K($n: String!) { createApiKey(input: { name: $n, permissions: [ADMIN] }) { __typename } }', (v) => ({ n: v }), 'createApiKey'],
  ['retireSigningKey.kid', 'mutation R($k: String!) { retireSigningKey(kid: $k) { __typename } }', (v) => ({ k: v }), 'retireSigningKey'],
];

const BAD_VALUES: [string, string][] = [
  ['a NUL byte', 'a\u0000b'],
  ['CR/LF', 'a\r\nSet-Cookie: x=1'],
  ['100 KB', 'x'.repeat(100 * 1024)],
];

const CASES = STRING_INPUTS.flatMap(([name, query, vars, field]) =>
  BAD_VALUES.map(([what, value]) => [`${what} in ${name}`, query, vars, field, value] as const),
);

describe('hostile strings in every string input are refused as validation errors, changing nothing', () => {
  it.each(CASES)('%s', async (_name, query, vars, field, value) => {
    const variables = JSON.parse(
      JSON.stringify(vars(value)).replace('"JWT"', JSON.stringify(token.jwt)).replace('"LOG', `"${logId}`).replace('"ID', `"${token.id}`),
    );
    const counts = 'select (select count(*) from request_token) as t, (select count(*) from api_client) as c, (select count(*) from api_key) as k';
    const [before] = await server.sql(counts);
    const res = await withoutConsumption(server, () => server.gql(query, variables));
    const result = res.data?.[field];
    if (result?.__typename) {
      expect(result.__typename, JSON.stringify(res).slice(0, 300)).toBe('ValidationError');
    } else {
      expect(res.errors?.[0].extensions?.code, JSON.stringify(res).slice(0, 300)).toBe('BAD_USER_INPUT');
    }
    expect(JSON.stringify(res)).not.toMatch(/INTERNAL_SERVER_ERROR|Unexpected error/);
    expect((await server.sql(counts))[0]).toEqual(before);
    const [status] = await server.sql('select status_code from request_token_log where id = $1', [logId]);
    expect(status.status_code).toBeNull();
  });
});

describe('hostile JSON and URLs', () => {
  const create = (input: Record<string, unknown>) =>
    withoutConsumption(server, async () => (await server.gql(CREATE, { input })).data?.createRequestToken);

  it('refuses data over 16 KiB', async () => {
    expect((await create({ scope: 's', data: { blob: 'x'.repeat(17 * 1024) } })).__typename).toBe('ValidationError');
  });

  it('refuses data nested too deep', async () => {
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = { a: deep };
    const result = await create({ scope: 's', data: deep });
    expect(result.issues).toEqual([{ path: ['input', 'data'], message: 'must be nested at most 16 levels deep' }]);
  });

  it('refuses data nested thousands of levels deep without crashing', async () => {
    const body = JSON.stringify({ query: CREATE, variables: { input: { scope: 's', data: { a: 'DEEP' } } } }).replace(
      '"DEEP"',
      `${'['.repeat(5000)}1${']'.repeat(5000)}`,
    );
    const res = await withoutConsumption(server, () => post(body));
    expect(res.text).not.toMatch(/INTERNAL_SERVER_ERROR|Unexpected error/);
    expect(res.json?.data?.createRequestToken?.__typename ?? res.status).not.toBe('CreateRequestTokenSuccess');
  });

  it('refuses a NUL byte inside data (PostgreSQL jsonb rejects it)', async () => {
    expect((await create({ scope: 's', data: { ['k\u0000']: 'v' } })).__typename).toBe('ValidationError');
    expect((await create({ scope: 's', data: { k: 'v\u0000' } })).__typename).toBe('ValidationError');
  });

  it('refuses an IPv6 address with a zone id as a client IP (it would not fit the column)', async () => {
    const res = await withoutConsumption(server, () =>
      server.gql(REDEEM, { input: { jwt: token.jwt, scope: 's', url: 'https://ok.example/page', clientIp: `fe80::1%${'a'.repeat(60)}` } }),
    );
    expect(res.data.redeemRequestToken).toMatchObject({ __typename: 'ValidationError', issues: [{ path: ['input', 'clientIp'] }] });
  });

  it.each([
    'javascript:alert(1)',
    'data:text/html,<script>alert(1)</script>',
    '//evil.example/path',
    'https://ok.example@evil.example/',
    'https://ok.example/a\r\nLocation: https://evil.example',
    'ftp://ok.example/file',
    '/relative/path',
  ])('refuses targetUrl %j', async (targetUrl) => {
    const result = await create({ scope: 's', targetUrl });
    expect(result.__typename).toBe('ValidationError');
    expect(result.issues[0].path).toEqual(['input', 'targetUrl']);
  });
});

describe('rate limit', () => {
  it('answers 429 with Retry-After once a key used its requests of the minute, consuming nothing', async () => {
    const { key } = await keyFor(server, '1', ['redeem', 'read'], { rateLimitPerMinute: 3 });
    for (let i = 0; i < 3; i++) expect((await server.gql('{ requestTokens { totalCount } }', {}, key)).status).toBe(200);
    const res = await withoutConsumption(server, () =>
      fetch(server.graphqlUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body: JSON.stringify({ query: REDEEM, variables: { input: { jwt: token.jwt, scope: 's', url: 'https://ok.example/page' } } }),
      }),
    );
    expect(res.status).toBe(429);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(((await res.json()) as any).errors[0].extensions.code).toBe('RATE_LIMITED');
    // Other keys are not affected.
    expect((await server.gql('{ requestTokens { totalCount } }')).status).toBe(200);
  });
});

describe('production edge', () => {
  let prod: TestServer;
  beforeAll(async () => {
    prod = await startTestServer({ NODE_ENV: 'production', REQUEST_TOKEN_ADMIN_KEY: `rt_AAAAAAAAAAAA_${'b'.repeat(43)}` });
  });
  afterAll(() => prod?.close());

  it('refuses introspection in production', async () => {
    const res = await prod.gql('{ __schema { types { name } } }');
    expect(res.data).toBeUndefined();
    expect(res.errors?.[0].message).toMatch(/introspection/i);
    expect(JSON.stringify(res)).not.toContain('RequestToken');
    const type = await prod.gql('{ __type(name: "RequestToken") { name } }');
    expect(type.data).toBeUndefined();
  });

  it('does not serve GraphiQL in production', async () => {
    const res = await fetch(prod.graphqlUrl, { headers: { accept: 'text/html' } });
    expect(await res.text()).not.toContain('GraphiQL');
  });

  it('still answers __typename and normal queries', async () => {
    const res = await prod.gql('{ __typename requestTokens { totalCount } }');
    expect(res.data).toEqual({ __typename: 'Query', requestTokens: { totalCount: 0 } });
  });
});
