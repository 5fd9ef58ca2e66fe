import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CREATE, REDEEM } from '../support/operations.js';
import { startTestServer, type TestServer } from '../support/harness.js';
import { withoutConsumption } from './support.js';

// Attacks on the HTTP edge: cost hidden in variables, refusals that read as syntax errors, paths beside /graphql,
// credentialed CORS, schema-describing errors before authentication. Issue 17, items 4 (the cost), 5, 7 and 11.

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
  // Some rows for nested pages to multiply.
  const res = await server.gql(CREATE, { input: { scope: 's', maxUses: 100 } });
  for (let i = 0; i < 3; i++) await server.gql(REDEEM, { input: { jwt: res.data.createRequestToken.jwt, scope: 's' } });
});
afterAll(() => server?.close());

type Path = 'fast' | 'yoga';
/** A query over the lean path (plain JSON POST) or Yoga's (GET), with the given Accept header. */
async function ask(path: Path, query: string, variables: Record<string, unknown> = {}, accept?: string, key: string | null = server.apiKey) {
  const headers: Record<string, string> = {};
  if (accept) headers.accept = accept;
  if (key) headers.authorization = `Bearer ${key}`;
  let res: Response;
  if (path === 'fast') {
    res = await fetch(server.graphqlUrl, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify({ query, variables }) });
  } else {
    const url = new URL(server.graphqlUrl);
    url.searchParams.set('query', query);
    url.searchParams.set('variables', JSON.stringify(variables));
    res = await fetch(url, { headers });
  }
  const text = await res.text();
  return { status: res.status, text, json: JSON.parse(text) as { data?: any; errors?: { message: string; extensions?: any }[] } };
}

const PATHS: Path[] = ['fast', 'yoga'];
const ACCEPTS = [undefined, 'application/json', 'application/graphql-response+json', '*/*'];
const EVERY = PATHS.flatMap((p) => ACCEPTS.map((a) => [p, a ?? '(none)'] as const));
const acceptOf = (a: string) => (a === '(none)' ? undefined : a);

const NESTED_PAGES = `query Q($n: Int) { requestTokenLogs(first: $n) { edges { node { token { logs(first: $n) { edges { node {
  token { logs(first: $n) { totalCount } } } } } } } } } }`;

describe('the cost limit sees variables (item 4)', () => {
  it.each(EVERY)('refuses nested pages sized by a variable before running anything (%s path, Accept %s)', async (path, accept) => {
    let statements = 0;
    const pool = server.services.pool;
    const query = pool.query.bind(pool);
    pool.query = ((...args: Parameters<typeof query>) => {
      statements++;
      return query(...args);
    }) as typeof pool.query;
    try {
      const res = await ask(path, NESTED_PAGES, { n: 60 }, acceptOf(accept));
      expect(res.status, res.text.slice(0, 300)).toBe(400);
      expect(res.json.data ?? null).toBeNull();
      expect(res.json.errors?.[0].extensions?.code).toBe('COST_LIMIT_EXCEEDED');
      expect(res.json.errors?.[0].message).not.toMatch(/syntax error/i);
      expect(statements).toBe(0);
    } finally {
      pool.query = query;
    }
  });

  it('measures each page size on its own: a cost measured for small pages is not reused for large ones', async () => {
    // The check keeps each document's cost per values of its page variables (server/http/query-cost.ts).
    const small = `query Small($n: Int) ${NESTED_PAGES.slice('query Q($n: Int) '.length)}`;
    expect((await ask('fast', small, { n: 2 })).status).toBe(200);
    const large = await ask('fast', small, { n: 60 });
    expect(large.json.errors?.[0].extensions?.code).toBe('COST_LIMIT_EXCEEDED');
    expect((await ask('fast', small, { n: 2 })).status).toBe(200);
  });

  it('still runs the same query with small pages, and a full page of tokens', async () => {
    expect((await ask('fast', NESTED_PAGES, { n: 3 })).json.data.requestTokenLogs.edges.length).toBeGreaterThan(0);
    const page = await ask('fast', 'query Q($n: Int) { requestTokens(first: $n) { edges { node { id scope userId data status logs(first: 5) { totalCount } } } } }', { n: 100 });
    expect(page.status, page.text.slice(0, 300)).toBe(200);
  });
});

describe('limit refusals say what was exceeded, with a code and HTTP 400 (both paths, any Accept)', () => {
  const deep = (depth: number) => {
    let selection = 'id';
    for (let i = 0; i < depth; i++) selection = `token { logs(first: 1) { edges { node { ${selection} } } } }`;
    return `query { requestTokenLogs(first: 1) { edges { node { ${selection} } } } }`;
  };
  const CASES: [string, string, string][] = [
    ['DEPTH_LIMIT_EXCEEDED', deep(4), 'depth'],
    ['ALIAS_LIMIT_EXCEEDED', `{ ${Array.from({ length: 20 }, (_, i) => `a${i}: viewer { keyId }`).join(' ')} }`, 'alias'],
    ['DIRECTIVE_LIMIT_EXCEEDED', `{ viewer { keyId ${'@include(if: true) '.repeat(20)} } }`, 'directive'],
    ['TOKEN_LIMIT_EXCEEDED', `{ viewer { ${'keyId '.repeat(2100)} } }`, 'token'],
  ];
  it.each(PATHS.flatMap((p) => ACCEPTS.flatMap((a) => CASES.map((c) => [c[0], p, a ?? '(none)', c[1], c[2]] as const))))(
    '%s on the %s path with Accept %s',
    async (code, path, accept, query, word) => {
      const res = await ask(path, query, {}, acceptOf(accept));
      expect(res.status, res.text.slice(0, 300)).toBe(400);
      expect(res.json.data ?? null).toBeNull();
      expect(res.json.errors?.[0].extensions?.code).toBe(code);
      expect(res.json.errors?.[0].message).toMatch(new RegExp(word, 'i'));
      expect(res.json.errors?.[0].message).not.toMatch(/syntax error/i);
    },
  );
});

/** Sends raw bytes and returns what comes back before the server closes or `ms` pass. */
function raw(bytes: string, ms = 2_000): Promise<string> {
  const { port } = new URL(server.url);
  return new Promise((resolve) => {
    const socket: Socket = connect(Number(port), '127.0.0.1');
    let got = '';
    const done = () => {
      socket.destroy();
      resolve(got);
    };
    const timer = setTimeout(done, ms);
    socket.on('data', (d) => (got += d.toString('latin1')));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    socket.on('error', () => undefined);
    socket.write(bytes);
  });
}

describe('GraphQL is served at exactly /graphql (item 5)', () => {
  const body = JSON.stringify({ query: CREATE, variables: { input: { scope: 's' } } });
  it.each(['/graphql/', '/foo/graphql', '/graphql/graphql', '//graphql', '/GRAPHQL', '/graphql;x', '/graphql%2F'])(
    'answers 404 at %s, even to a form POST with a valid key, creating nothing',
    async (path) => {
      const [before] = await server.sql('select count(*)::int as n from request_token');
      for (const type of ['application/json', 'application/x-www-form-urlencoded']) {
        const res = await fetch(`${server.url}${path}`, {
          method: 'POST',
          headers: { 'content-type': type, authorization: `Bearer ${server.apiKey}` },
          body,
        });
        expect(res.status).toBe(404);
      }
      expect((await server.sql('select count(*)::int as n from request_token'))[0]).toEqual(before);
    },
  );

  it('answers 404 to a huge body at another path without reading it', async () => {
    const head = `POST /foo/graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${21 * 1024 * 1024}\r\n\r\n`;
    const answer = await raw(`${head}{"query":"`);
    expect(answer).toMatch(/^HTTP\/1\.1 404/);
  });

  it('answers 404 to a chunked body at another path, and 411 at /graphql', async () => {
    const chunked = (path: string) => `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"que\r\n`;
    expect(await raw(chunked('/graphql/'))).toMatch(/^HTTP\/1\.1 404/);
    expect(await raw(chunked('/graphql'))).toMatch(/^HTTP\/1\.1 411/);
  });

  it('still serves /graphql, /healthz, the JWKS and the dashboard', async () => {
    expect((await server.gql('{ viewer { keyId } }')).status).toBe(200);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${server.url}/.well-known/jwks.json`)).status).toBe(200);
    expect((await fetch(`${server.url}/dashboard`)).status).toBe(200);
    expect((await fetch(`${server.url}/graphql?x=1`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${server.apiKey}` }, body: '{"query":"{ viewer { keyId } }"}' })).status).toBe(200);
  });
});

describe('CORS is off unless configured (item 7)', () => {
  const evil = 'https://evil.example';
  it('reflects no Origin and allows no credentials, on a request or a preflight', async () => {
    const res = await fetch(server.graphqlUrl, {
      method: 'POST',
      headers: { origin: evil, 'content-type': 'application/json', authorization: `Bearer ${server.apiKey}` },
      body: JSON.stringify({ query: '{ viewer { keyId } }' }),
    });
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    expect(res.headers.get('access-control-allow-credentials')).toBeNull();
    const preflight = await fetch(server.graphqlUrl, {
      method: 'OPTIONS',
      headers: { origin: evil, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
    expect(preflight.headers.get('access-control-allow-credentials')).toBeNull();
    expect(preflight.headers.get('access-control-allow-headers')).toBeNull();
  });

  describe('with CORS_ORIGINS', () => {
    let cors: TestServer;
    beforeAll(async () => {
      cors = await startTestServer({ CORS_ORIGINS: 'https://dash.example, https://admin.example' });
    });
    afterAll(() => cors?.close());
    const preflight = (origin: string) =>
      fetch(cors.graphqlUrl, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
      });

    it('allows the listed origins, without credentials', async () => {
      const res = await preflight('https://admin.example');
      expect(res.headers.get('access-control-allow-origin')).toBe('https://admin.example');
      expect(res.headers.get('access-control-allow-credentials')).toBeNull();
      expect(res.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('authorization');
      const post = await fetch(cors.graphqlUrl, {
        method: 'POST',
        headers: { origin: 'https://dash.example', 'content-type': 'application/json', authorization: `Bearer ${cors.apiKey}` },
        body: JSON.stringify({ query: '{ viewer { keyId } }' }),
      });
      expect(post.status).toBe(200);
      expect(post.headers.get('access-control-allow-origin')).toBe('https://dash.example');
      expect(post.headers.get('access-control-allow-credentials')).toBeNull();
    });

    it('allows no other origin', async () => {
      for (const origin of [evil, 'https://dash.example.evil.example', 'null']) {
        const res = await preflight(origin);
        expect(res.headers.get('access-control-allow-origin')).toBeNull();
      }
    });
  });
});

describe('unauthenticated requests learn nothing about the schema (item 11)', () => {
  const INVALID = 'mutation { createApiKey(input: { permissions: [ADMIN] }) { __typename } }';
  it.each(PATHS.flatMap((p) => [[p, 'no key'], [p, 'a wrong key']] as const))(
    'answers 401 before validating (%s path, %s)',
    async (path, who) => {
      const key = who === 'no key' ? null : `rt_AAAAAAAAAAAA_${'x'.repeat(43)}`;
      for (const query of [INVALID, '{ requestTokns { totalCount } }', '{ viewer { keyId } ', NESTED_PAGES]) {
        const res = await ask(path, query, { n: 60 }, 'application/json', key);
        expect(res.status, res.text).toBe(401);
        expect(res.json.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
        expect(res.text).not.toMatch(/CreateApiKeyInput|requestTokns|String!|Syntax Error|COST/);
      }
    },
  );

  it('still answers a key holder with the validation message', async () => {
    const res = await ask('fast', INVALID, {}, 'application/json');
    expect(res.text).toMatch(/CreateApiKeyInput/);
  });

  it('answers 401 to a redemption without a key, consuming nothing', async () => {
    const res = await withoutConsumption(server, () => ask('fast', REDEEM, { input: { jwt: 'x', scope: 's' } }, undefined, null));
    expect(res.status).toBe(401);
  });
});
