import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { parse } from 'graphql';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  createRequestTokenClient,
  isRequestTokenClientError,
  RequestTokenClientError,
  type RequestTokenClient,
} from '@request-token/sdk';
import { startTestServer, type TestServer } from '../support/harness.js';

let server: TestServer;
let rt: RequestTokenClient;

beforeAll(async () => {
  server = await startTestServer();
  rt = createRequestTokenClient({ url: server.graphqlUrl, apiKey: server.apiKey });
});
afterAll(() => server?.close());

async function rejection(promise: Promise<unknown>): Promise<RequestTokenClientError> {
  const error = await promise.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (e: unknown) => e,
  );
  if (!isRequestTokenClientError(error)) throw error;
  return error;
}

describe('the typed client against the real service', () => {
  it('issues, redeems, records the status and reads the log back, each method taking its input object', async () => {
    const targetUrl = 'https://app.example/unsubscribe?list=weekly';
    const issued = await rt.createRequestToken({ scope: 'unsubscribe', userId: '42', targetUrl, loginMode: 'REQUEST', maxUses: 2 });
    if (issued.__typename !== 'CreateRequestTokenSuccess') throw new Error(issued.message);
    expect(issued.url).toBe(`${targetUrl}&rt=${issued.jwt}`);
    expect(issued.token).toMatchObject({ scope: 'unsubscribe', userId: '42', loginMode: 'REQUEST', maxUses: 2, status: 'ACTIVE' });

    const redeemed = await rt.redeemRequestToken({ jwt: issued.jwt, scope: 'unsubscribe', url: issued.url, clientIp: '203.0.113.9' });
    if (redeemed.__typename !== 'Redemption') throw new Error(`refused: ${JSON.stringify(redeemed)}`);
    expect(redeemed).toMatchObject({ authenticateAs: '42', loginMode: 'REQUEST', usesRemaining: 1 });

    const recorded = await rt.recordResponseStatus({ redemptionId: redeemed.id, statusCode: 200 });
    expect(recorded).toMatchObject({ __typename: 'RecordResponseStatusSuccess', log: { id: redeemed.id, statusCode: 200, clientIp: '203.0.113.9' } });

    const logs = await rt.requestTokenLogs({ filter: { tokenId: issued.token.id } });
    expect(logs.totalCount).toBe(1);
    expect(logs.edges[0].node).toMatchObject({ id: redeemed.id, statusCode: 200, errorCode: null, token: { id: issued.token.id } });

    expect(await rt.requestToken({ id: issued.token.id })).toMatchObject({ usedToDate: 1, status: 'ACTIVE' });
    const listed = await rt.requestTokens({ filter: { userId: '42', scope: 'unsubscribe' }, first: 5 });
    expect(listed.edges.map((e) => e.node.id)).toContain(issued.token.id);

    const revoked = await rt.revokeRequestToken({ id: issued.token.id });
    expect(revoked).toMatchObject({ __typename: 'RevokeRequestTokenSuccess', token: { status: 'REVOKED' } });
    const again = await rt.redeemRequestToken({ jwt: issued.jwt, scope: 'unsubscribe', url: issued.url });
    expect(again).toMatchObject({ __typename: 'TokenRejectedError', code: 'TOKEN_REVOKED', tokenId: issued.token.id });
  });

  it('returns expected failures as union members, not errors', async () => {
    const invalid = await rt.createRequestToken({ scope: '', maxUses: 0 });
    expect(invalid.__typename).toBe('ValidationError');
    if (invalid.__typename === 'ValidationError') expect(invalid.issues.length).toBeGreaterThan(0);
    expect(await rt.revokeRequestToken({ id: '999999' })).toMatchObject({ __typename: 'NotFoundError', code: 'NOT_FOUND' });
    expect(await rt.requestToken({ id: '999999' })).toBeNull();
    expect(await rt.redeemRequestToken({ jwt: 'not.a.jwt', scope: 'x' })).toMatchObject({
      __typename: 'TokenRejectedError',
      code: 'TOKEN_MALFORMED',
    });
  });

  it('runs any typed document through request(), the escape hatch for dashboards', async () => {
    const doc: TypedDocumentNode<{ requestTokens: { totalCount: number } }, { scope: string }> = parse(
      'query Count($scope: String!) { requestTokens(filter: { scope: $scope }) { totalCount } }',
    );
    await rt.createRequestToken({ scope: 'count-me' });
    expect(await rt.request(doc, { scope: 'count-me' })).toEqual({ requestTokens: { totalCount: 1 } });
  });

  it('sends extra headers from a function on every call', async () => {
    const seen: string[] = [];
    const client = createRequestTokenClient({
      url: server.graphqlUrl,
      apiKey: server.apiKey,
      headers: () => ({ 'x-trace-id': 'abc' }),
      fetch: async (input, init) => {
        seen.push(new Headers(init?.headers).get('x-trace-id') ?? '');
        return fetch(input, init);
      },
    });
    await client.requestTokens({ first: 1 });
    expect(seen).toEqual(['abc']);
  });
});

describe('transport failures throw one RequestTokenClientError with a kind', () => {
  it('a bad API key is unauthorized (401) and the message does not carry the variables', async () => {
    const client = createRequestTokenClient({ url: server.graphqlUrl, apiKey: 'rt_1_wrong' });
    const error = await rejection(client.redeemRequestToken({ jwt: 'secret-jwt-value', scope: 's' }));
    expect(error).toBeInstanceOf(RequestTokenClientError);
    expect(error.kind).toBe('unauthorized');
    expect(error.status).toBe(401);
    expect(error.operationName).toBe('RedeemRequestToken');
    expect(error.message).not.toContain('secret-jwt-value');
  });

  it('GraphQL errors in the response are kind graphql', async () => {
    const error = await rejection(rt.request(parse('query { noSuchField }') as TypedDocumentNode<unknown, Record<string, never>>));
    expect(error.kind).toBe('graphql');
    expect(error.errors[0].message).toMatch(/noSuchField/);
  });

  describe('against a misbehaving endpoint', () => {
    let http: Server;
    let tcp: TcpServer;
    let httpUrl: string;
    let resetUrl: string;
    let connections = 0;
    let lastStatus = 500;

    beforeAll(async () => {
      http = createServer((req, res) => {
        if (req.url === '/hang') return; // never answers
        res.writeHead(lastStatus, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ message: 'boom' }] }));
      });
      await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
      httpUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
      // Accepts the connection, then drops it: the request may have arrived, so only safe operations retry.
      tcp = createTcpServer((socket) => {
        connections++;
        socket.once('data', () => socket.destroy());
      });
      await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
      resetUrl = `http://127.0.0.1:${(tcp.address() as AddressInfo).port}/graphql`;
    });
    afterAll(async () => {
      http.closeAllConnections();
      await new Promise((r) => http.close(r));
      await new Promise((r) => tcp.close(r));
    });

    it('5xx is kind server, 403 forbidden, 429 http', async () => {
      const client = createRequestTokenClient({ url: `${httpUrl}/graphql`, apiKey: 'k' });
      lastStatus = 500;
      expect((await rejection(client.requestTokens())).kind).toBe('server');
      lastStatus = 403;
      expect((await rejection(client.requestTokens())).kind).toBe('forbidden');
      lastStatus = 429;
      const limited = await rejection(client.requestTokens());
      expect([limited.kind, limited.status]).toEqual(['http', 429]);
    });

    it('an answer that never comes is kind timeout', async () => {
      const client = createRequestTokenClient({ url: `${httpUrl}/hang`, apiKey: 'k', timeoutMs: 200, retries: 0 });
      const error = await rejection(client.requestToken({ id: '1' }));
      expect(error.kind).toBe('timeout');
    });

    it('a dropped connection is retried for a query but a redemption is sent only once', async () => {
      const client = createRequestTokenClient({ url: resetUrl, apiKey: 'k', retries: 2, retryDelayMs: 1 });
      connections = 0;
      const query = await rejection(client.requestTokens());
      expect([query.kind, query.attempts, connections]).toEqual(['network', 3, 3]);

      connections = 0;
      const redeem = await rejection(client.redeemRequestToken({ jwt: 'j', scope: 's' }));
      expect([redeem.kind, redeem.attempts, connections]).toEqual(['network', 1, 1]);

      connections = 0;
      const record = await rejection(client.recordResponseStatus({ redemptionId: '1', statusCode: 200 }));
      expect([record.kind, record.attempts, connections]).toEqual(['network', 3, 3]);
    });

    it('a refused connection never reached the service, so even a redemption is retried', async () => {
      const closed = createTcpServer();
      await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
      const port = (closed.address() as AddressInfo).port;
      await new Promise((r) => closed.close(r));
      let calls = 0;
      const client = createRequestTokenClient({
        url: `http://127.0.0.1:${port}/graphql`,
        apiKey: 'k',
        retries: 2,
        retryDelayMs: 1,
        fetch: (input, init) => {
          calls++;
          return fetch(input, init);
        },
      });
      const error = await rejection(client.redeemRequestToken({ jwt: 'j', scope: 's' }));
      expect([error.kind, error.attempts, calls]).toEqual(['network', 3, 3]);
      expect(error.message).toContain('ECONNREFUSED');
    });

    it('a retry predicate decides, told the attempt and whether the SDK deems a retry safe', async () => {
      lastStatus = 429;
      let calls = 0;
      const seen: [number, boolean, string][] = [];
      const client = createRequestTokenClient({
        url: `${httpUrl}/graphql`,
        apiKey: 'k',
        retries: 3,
        retryDelayMs: 1,
        fetch: (input, init) => {
          calls++;
          return fetch(input, init);
        },
        // A 429 is not retried by default; this client retries it for queries.
        retry: ({ error, attempt, safe, type }) => {
          seen.push([attempt, safe, error.kind]);
          return type === 'query' && error.status === 429;
        },
      });
      const limited = await rejection(client.requestTokens());
      expect([limited.status, limited.attempts, calls]).toEqual([429, 4, 4]);
      expect(seen).toEqual([[1, false, 'http'], [2, false, 'http'], [3, false, 'http']]);

      calls = 0;
      const never = createRequestTokenClient({ url: resetUrl, apiKey: 'k', retries: 3, retryDelayMs: 1, retry: () => false });
      connections = 0;
      const dropped = await rejection(never.requestTokens());
      expect([dropped.kind, dropped.attempts, connections]).toEqual(['network', 1, 1]);
    });

    it('backs off with jitter: each wait lies between half and the whole of the doubled base delay', async () => {
      const waits: number[] = [];
      const realSetTimeout = globalThis.setTimeout;
      const spy = vi.spyOn(globalThis, 'setTimeout').mockImplementation(((fn: () => void, ms?: number) => {
        if (ms !== undefined && ms >= 20) waits.push(ms);
        return realSetTimeout(fn, 0);
      }) as typeof setTimeout);
      const random = vi.spyOn(Math, 'random').mockReturnValueOnce(0).mockReturnValueOnce(1).mockReturnValueOnce(0.5);
      try {
        const client = createRequestTokenClient({ url: resetUrl, apiKey: 'k', retries: 3, retryDelayMs: 40 });
        await rejection(client.requestTokens());
      } finally {
        spy.mockRestore();
        random.mockRestore();
      }
      expect(waits).toEqual([20, 80, 120]);
    });

    it('a caller abort is kind aborted', async () => {
      const client = createRequestTokenClient({ url: `${httpUrl}/hang`, apiKey: 'k' });
      const controller = new AbortController();
      const pending = client.requestTokens({}, { signal: controller.signal });
      setTimeout(() => controller.abort(), 20);
      expect((await rejection(pending)).kind).toBe('aborted');
    });
  });
});
