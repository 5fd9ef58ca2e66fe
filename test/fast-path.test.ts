import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acceptedMediaType } from '../server/http/graphql-fast-path.js';
import { sha256Hex } from '../server/http/persisted-queries.js';
import { startTestServer, type TestServer } from './support/harness.js';
import type { Plugin } from 'graphql-yoga';
import { CREATE, RECORD, REDEEM } from './support/operations.js';

// Two servers on databases of their own, driven through the same sequence of requests: one serves plain JSON POSTs
// on the lean path (compiled by graphql-jit, the default; or with Yoga's executor), the other sends everything
// through Yoga. Their answers must be the same.
for (const mode of ['prepared', 'jit', 'on'] as const) {
  describe(`GRAPHQL_FAST_PATH=${mode}`, () => {
    let fast: TestServer;
    let yoga: TestServer;
    beforeAll(async () => {
      [fast, yoga] = await Promise.all([startTestServer({ GRAPHQL_FAST_PATH: mode }), startTestServer({ GRAPHQL_FAST_PATH: 'off' })]);
    });
    afterAll(() => Promise.all([fast?.close(), yoga?.close()]));

    interface Exchange {
      status: number;
      type: string | null;
      body: unknown;
    }

    async function send(server: TestServer, init: { body: string; headers?: Record<string, string>; key?: string | null }) {
      const headers: Record<string, string> = { 'content-type': 'application/json', ...init.headers };
      const key = init.key === undefined ? server.apiKey : init.key;
      if (key !== null) headers.authorization = `Bearer ${key}`;
      const res = await fetch(server.graphqlUrl, { method: 'POST', headers, body: init.body });
      const text = await res.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // compared as text
      }
      return { status: res.status, type: res.headers.get('content-type'), body } satisfies Exchange;
    }

    /** Times and signatures differ between the two servers; everything else must not. */
    const normalise = (value: unknown): unknown =>
      JSON.parse(
        JSON.stringify(value)
          .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g, '<time>')
          .replace(/eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/g, '<jwt>'),
      );

    async function same(init: { body: string; headers?: Record<string, string>; key?: string | null }) {
      const a = await send(fast, init);
      const b = await send(yoga, init);
      expect(normalise(a)).toEqual(normalise(b));
      return a;
    }

    const op = (query: string, variables?: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
      JSON.stringify({ query, variables, ...extra });

    describe('the lean GraphQL path answers exactly as Yoga does', () => {
      it('for issue, redeem, refusals and recordResponseStatus', async () => {
        const created = await same({ body: op(CREATE, { input: { scope: 'news', userId: 'u1', maxUses: 2, data: { a: 1 } } }) });
        expect(created.status).toBe(200);
        const { jwt } = (created.body as any).data.createRequestToken;
        // The JWTs differ (issued a moment apart); each server redeems its own.
        const jwts = await Promise.all([fast, yoga].map(async (s) => {
          const res = await send(s, { body: op(CREATE, { input: { scope: 'news', maxUses: 1 } }) });
          return (res.body as any).data.createRequestToken.jwt as string;
        }));
        const [a, b] = await Promise.all([
          send(fast, { body: op(REDEEM, { input: { jwt: jwts[0], scope: 'news', clientIp: '192.0.2.1' } }) }),
          send(yoga, { body: op(REDEEM, { input: { jwt: jwts[1], scope: 'news', clientIp: '192.0.2.1' } }) }),
        ]);
        expect((a.body as any).data.redeemRequestToken.__typename).toBe('Redemption');
        expect(normalise(a)).toEqual(normalise(b));
        await same({ body: op(REDEEM, { input: { jwt, scope: 'other' } }) });
        await same({ body: op(REDEEM, { input: { jwt: 'not-a-jwt', scope: 'news' } }) });
        await same({ body: op(REDEEM, { input: { jwt: '', scope: '', clientIp: 'nope' } }) });
        await same({ body: op(CREATE, { input: { scope: '', maxUses: 0 } }) });
        await same({ body: op(RECORD, { input: { redemptionId: '424242', statusCode: 200 } }) });
      });

      it('for errors: bad query arguments, unknown fields, syntax errors, bad variables, missing operations', async () => {
        const bad = await same({ body: op('{ requestTokens(first: 1000) { totalCount } }') });
        expect((bad.body as any).errors[0].extensions.code).toBe('BAD_USER_INPUT');
        await same({ body: op('{ nope }') });
        await same({ body: op('{ requestTokens( }') });
        await same({ body: op(REDEEM, { input: { jwt: 1 } }) });
        await same({ body: op('query A { requestTokens { totalCount } } query B { requestTokens { totalCount } }') });
        await same({ body: op('query A { requestTokens { totalCount } }', undefined, { operationName: 'B' }) });
        await same({ body: op('mutation { redeemRequestToken(input: { jwt: "x", scope: "s" }) { __typename } }') });
        await same({ body: '{"query": ' });
        await same({ body: '[]' });
        await same({ body: op('{ requestTokens { totalCount } }', undefined, { extensions: { a: 1 } }) });
      });

      it('for persisted queries: unknown hash, mismatch, registration, then the hash alone', async () => {
        const query = `query Persisted${mode}($first: Int) { requestTokens(first: $first) { totalCount } }`;
        const hash = sha256Hex(query);
        const apq = (sha256Hash: string, version = 1) => ({ extensions: { persistedQuery: { version, sha256Hash } } });
        const hashOnly = (h = hash, extra: Record<string, unknown> = {}) => JSON.stringify({ variables: { first: 1 }, ...apq(h), ...extra });

        // Unknown: 404, nothing runs; without a key, 401 first (a stranger learns nothing of the store).
        const unknown = await same({ body: hashOnly() });
        expect(unknown.status).toBe(404);
        expect((unknown.body as any).errors[0]).toMatchObject({ message: 'PersistedQueryNotFound', extensions: { code: 'PERSISTED_QUERY_NOT_FOUND' } });
        expect((await same({ body: hashOnly(), key: null })).status).toBe(401);
        // A text that is not the hash's: refused, and not kept.
        const mismatch = await same({ body: op(`${query} `, { first: 1 }, apq(hash)) });
        expect(mismatch.status).toBe(400);
        expect((mismatch.body as any).errors[0].extensions.code).toBe('PERSISTED_QUERY_MISMATCH');
        expect((await same({ body: hashOnly() })).status).toBe(404);
        // A stranger cannot register one.
        expect((await same({ body: op(query, { first: 1 }, apq(hash)), key: null })).status).toBe(401);
        expect((await same({ body: hashOnly() })).status).toBe(404);

        // Registered with its text: runs, and from then on the hash alone runs it (with its own variables).
        const registered = await same({ body: op(query, { first: 1 }, apq(hash)) });
        expect(registered).toMatchObject({ status: 200, body: { data: { requestTokens: { totalCount: expect.any(Number) } } } });
        const lanes = { ...fast.app.lanes };
        const byHash = await same({ body: hashOnly() });
        expect(byHash.body).toEqual(registered.body);
        if (mode === 'prepared') expect(fast.app.lanes.prepared).toBe(lanes.prepared + 1);
        await same({ body: JSON.stringify({ query: null, ...apq(hash), variables: { first: 1 } }) });
        await same({ body: hashOnly(hash, { operationName: `Persisted${mode}` }) });
        await same({ body: hashOnly(hash, { operationName: 'Other' }) });
        await same({ body: hashOnly(hash, { variables: { first: 'x' } }) });
        expect((await same({ body: hashOnly(), key: null })).status).toBe(401);
        // Not the protocol: another version, another extension beside it.
        await same({ body: hashOnly(hash, apq(hash, 2)) });
        await same({ body: JSON.stringify({ variables: { first: 1 }, extensions: { persistedQuery: { version: 1, sha256Hash: hash }, other: 1 } }) });
        await same({ body: JSON.stringify({ variables: { first: 1 }, extensions: { persistedQuery: 'x' } }) });

        // A mutation by hash: runs once per request, as with its text.
        const created = await same({ body: op(CREATE, { input: { scope: 'persisted', maxUses: 1 } }, apq(sha256Hex(CREATE))) });
        expect((created.body as any).data.createRequestToken.__typename).toBe('CreateRequestTokenSuccess');
        const again = await same({ body: JSON.stringify({ variables: { input: { scope: 'persisted', maxUses: 1 } }, ...apq(sha256Hex(CREATE)) }) });
        expect((again.body as any).data.createRequestToken.token.scope).toBe('persisted');
        const issued = await Promise.all([fast, yoga].map((s) => s.sql(`select count(*)::int as n from request_token where scope = 'persisted'`)));
        expect(issued.map((rows) => rows[0].n)).toEqual([2, 2]);
      });

      it('for authentication: 401 without a key or with a bad one', async () => {
        const missing = await same({ body: op('{ requestTokens { totalCount } }'), key: null });
        expect(missing.status).toBe(401);
        const wrong = await same({ body: op('{ requestTokens { totalCount } }'), key: 'rt_aaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' });
        expect(wrong.status).toBe(401);
        await same({ body: op('{ requestTokens { totalCount } }'), key: 'garbage' });
      });

      it('for each Accept header a client may send', async () => {
        for (const accept of [
          '*/*',
          'application/json',
          'application/graphql-response+json',
          'application/graphql-response+json, application/json;q=0.9',
          'application/json, application/graphql-response+json',
          'application/json; charset=latin1, application/graphql-response+json',
          'application/*',
          '',
          'text/html',
          'text/event-stream',
          'multipart/mixed',
        ]) {
          await same({ body: op('{ requestTokens(first: 1) { totalCount } }'), headers: { accept } });
          await same({ body: op('{ requestTokens(first: 1000) { totalCount } }'), headers: { accept } });
          await same({ body: op('{ requestTokens(first: 1) { totalCount } }'), headers: { accept }, key: null });
        }
      });

      it('for a failure inside a mutation: masked', async () => {
        await Promise.all([fast, yoga].map((s) => s.sql('alter table request_token rename to request_token_away')));
        try {
          const broken = await same({
            body: op(`mutation M($input: CreateRequestTokenInput!) {
              a: createRequestToken(input: $input) { __typename }
              b: createRequestToken(input: $input) { __typename } }`, { input: { scope: 's' } }),
          });
          expect((broken.body as any).errors[0]).toMatchObject({ message: 'Unexpected error.', extensions: { code: 'INTERNAL_SERVER_ERROR' } });
        } finally {
          await Promise.all([fast, yoga].map((s) => s.sql('alter table request_token_away rename to request_token')));
        }
      });

      it('keeps a variable inside an object literal (data: { a: $v })', async () => {
        const query = `mutation($v: String, $n: Int) {
          createRequestToken(input: { scope: "literal", data: { a: $v, nested: { n: $n, list: [$v, 1] } } }) {
            ... on CreateRequestTokenSuccess { token { data } }
          }
        }`;
        const res = await same({ body: op(query, { v: 'kept', n: 7 }) });
        expect((res.body as any).data.createRequestToken.token.data).toEqual({ a: 'kept', nested: { n: 7, list: ['kept', 1] } });
      });

      it('picks the media type Yoga picks', () => {
        expect(acceptedMediaType(undefined)).toBe('application/json');
        expect(acceptedMediaType('application/graphql-response+json')).toBe('application/graphql-response+json');
        expect(acceptedMediaType('application/graphql-response+json, application/json')).toBe('application/graphql-response+json');
        expect(acceptedMediaType('application/json, application/graphql-response+json')).toBe('application/json');
        expect(acceptedMediaType('text/html')).toBeNull();
      });
    });
  });
}

describe('a plugin added to Yoga', () => {
  const seen: string[] = [];
  // Records every hook it is given; onRequest belongs to Yoga's transport, so a request without it took the lean path.
  const spy: Plugin<any> = {
    onRequest: () => void seen.push('request'),
    onParams: () => void seen.push('params'),
    onParse: () => void seen.push('parse'),
    onValidate: () => void seen.push('validate'),
    onContextBuilding: () => void seen.push('context'),
    onExecute: () => ({ onExecuteDone: () => void seen.push('executed') }),
    onExecutionResult: ({ result, setResult }) => {
      seen.push('result');
      setResult({ ...(result as object), extensions: { seenBy: 'spy' } } as never);
    },
  };
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({}, { plugins: [spy] });
  });
  afterAll(() => server?.close());

  it('runs on a lean-path request: every hook from the parameters on, and its result changes reach the client', async () => {
    seen.length = 0;
    const res = await fetch(server.graphqlUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${server.apiKey}` },
      body: JSON.stringify({ query: '{ requestTokens(first: 1) { totalCount } }' }),
    });
    expect(await res.json()).toEqual({ data: { requestTokens: { totalCount: 0 } }, extensions: { seenBy: 'spy' } });
    expect(seen).toEqual(['params', 'parse', 'validate', 'context', 'executed', 'result']);
  });

  it('runs on a request that Yoga serves, with its transport hook as well', async () => {
    seen.length = 0;
    const res = await fetch(`${server.graphqlUrl}?query=${encodeURIComponent('{ requestTokens(first: 1) { totalCount } }')}`, {
      headers: { authorization: `Bearer ${server.apiKey}` },
    });
    expect(await res.json()).toEqual({ data: { requestTokens: { totalCount: 0 } }, extensions: { seenBy: 'spy' } });
    expect(seen).toEqual(['request', 'params', 'parse', 'validate', 'context', 'executed', 'result']);
  });
});
