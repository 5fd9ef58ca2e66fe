import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createRequestTokenClient,
  isRequestTokenClientError,
  requestToken,
  withRequestToken,
  type RequestTokenClient,
  type RequestTokenMiddlewareOptions,
} from '@request-token/sdk';
import { startTestServer, type TestServer } from '../support/harness.js';
import { issueWith } from '../support/sdk.js';

let server: TestServer;
let rt: RequestTokenClient;

beforeAll(async () => {
  server = await startTestServer();
  rt = createRequestTokenClient({ url: server.graphqlUrl, apiKey: server.apiKey });
});
afterAll(() => server?.close());

const issue = (input: Parameters<RequestTokenClient['createRequestToken']>[0]) => issueWith(rt, input);

/** The token's log rows (oldest first) once every row has its status recorded. */
async function recordedLogs(tokenId: string, expected: number) {
  for (let i = 0; i < 100; i++) {
    const rows = await server.sql('select status_code, error_code from request_token_log where token_id = $1 order by id', [tokenId]);
    if (rows.length === expected && rows.every((r) => r.status_code !== null)) return rows;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`log of token ${tokenId} never got ${expected} recorded rows`);
}

describe('requestToken(), the connect-style middleware on a plain node:http server', () => {
  let app: Server;
  let base: string;
  let options: RequestTokenMiddlewareOptions;
  const logins: string[] = [];

  /** Runs the middleware, then a handler that answers with what it was given. */
  function handle(req: IncomingMessage, res: ServerResponse) {
    requestToken(options)(req, res, (error) => {
      if (error) {
        res.statusCode = isRequestTokenClientError(error) ? 503 : 500;
        res.end(String((error as Error).message));
        return;
      }
      const status = Number(new URL(req.url!, 'http://x').searchParams.get('status') ?? 200);
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ redemption: req.requestToken ?? null }));
    });
  }

  beforeAll(async () => {
    app = createServer(handle);
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    app.closeAllConnections();
    await new Promise((r) => app.close(r));
  });

  const use = (over: Partial<RequestTokenMiddlewareOptions>) => {
    options = { client: rt, scope: 'download', required: true, ...over };
  };

  it('hands the Redemption to the handler and records the response status afterwards', async () => {
    use({});
    const issued = await issue({ scope: 'download', targetUrl: `${base}/file?status=201`, data: { file: 'a.pdf' } });
    const res = await fetch(issued.url!, { headers: { 'user-agent': 'test-agent' } });
    expect(res.status).toBe(201);
    const body = await res.json();
    expect(body.redemption).toMatchObject({ __typename: 'Redemption', data: { file: 'a.pdf' }, usesRemaining: 0 });
    expect(await recordedLogs(issued.token.id, 1)).toEqual([{ status_code: 201, error_code: null }]);
    const [log] = await server.sql('select client_ip, user_agent from request_token_log where token_id = $1', [issued.token.id]);
    expect(log).toEqual({ client_ip: '127.0.0.1', user_agent: 'test-agent' });
  });

  it('refuses with 403 and the code, and records the refusal status on its log row', async () => {
    use({});
    const issued = await issue({ scope: 'download', maxUses: 1 });
    expect((await fetch(`${base}/file?rt=${issued.jwt}`)).status).toBe(200);
    const second = await fetch(`${base}/file?rt=${issued.jwt}`);
    expect(second.status).toBe(403);
    expect(await second.json()).toEqual({ error: { code: 'MAX_USES_EXCEEDED', message: expect.any(String) } });
    expect(await recordedLogs(issued.token.id, 2)).toEqual([
      { status_code: 200, error_code: null },
      { status_code: 403, error_code: 'MAX_USES_EXCEEDED' },
    ]);
  });

  it('refuses a browser with a short page in plain words, an API client with JSON', async () => {
    use({});
    const issued = await issue({ scope: 'download', maxUses: 1 });
    const browser = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8';
    expect((await fetch(`${base}/file?rt=${issued.jwt}`, { headers: { accept: browser } })).status).toBe(200);
    const page = await fetch(`${base}/file?rt=${issued.jwt}`, { headers: { accept: browser } });
    expect(page.status).toBe(403);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    const html = await page.text();
    expect(html).toContain('<h1>This link has already been used</h1>');
    expect(html).toContain('Reason: MAX_USES_EXCEEDED');
    const api = await fetch(`${base}/file?rt=${issued.jwt}`, { headers: { accept: 'application/json, text/html' } });
    expect([api.headers.get('content-type'), (await api.json()).error.code]).toEqual([
      'application/json; charset=utf-8',
      'MAX_USES_EXCEEDED',
    ]);
    const missing = await fetch(`${base}/file`, { headers: { accept: browser } });
    expect(await missing.text()).toContain('<h1>This page needs a link</h1>');
  });

  it('refuses a token of another scope or URL, and a missing token when required', async () => {
    use({});
    const other = await issue({ scope: 'other' });
    expect(await (await fetch(`${base}/file?rt=${other.jwt}`)).json()).toMatchObject({ error: { code: 'SCOPE_MISMATCH' } });
    const elsewhere = await issue({ scope: 'download', targetUrl: 'http://elsewhere.example/file' });
    expect(await (await fetch(`${base}/file?rt=${elsewhere.jwt}`)).json()).toMatchObject({
      error: { code: 'TARGET_URL_MISMATCH' },
    });
    const missing = await fetch(`${base}/file`);
    expect([missing.status, (await missing.json()).error.code]).toEqual([403, 'TOKEN_MISSING']);
  });

  it('runs the handler as is without a token when not required, but still refuses a bad one', async () => {
    use({ required: false });
    const res = await fetch(`${base}/file`);
    expect([res.status, await res.json()]).toEqual([200, { redemption: null }]);
    expect((await fetch(`${base}/file?rt=garbage`)).status).toBe(403);
  });

  it('renders a custom refusal with onRejected and records that status', async () => {
    use({
      onRejected: (rejection, _req, res) => {
        res.writeHead(410, { 'content-type': 'text/html' });
        res.end(`<p>Link no longer valid (${rejection.code})</p>`);
      },
    });
    const issued = await issue({ scope: 'download' });
    await rt.revokeRequestToken({ id: issued.token.id });
    const res = await fetch(`${base}/file?rt=${issued.jwt}`);
    expect([res.status, await res.text()]).toEqual([410, '<p>Link no longer valid (TOKEN_REVOKED)</p>']);
    expect(await recordedLogs(issued.token.id, 1)).toEqual([{ status_code: 410, error_code: 'TOKEN_REVOKED' }]);
  });

  it('passes the signed-in user, so a token issued to someone else is refused', async () => {
    use({ getUserId: (req) => (req.headers['x-user'] as string | undefined) ?? null });
    const issued = await issue({ scope: 'download', userId: 'alice', loginMode: 'REQUEST', maxUses: 5 });
    const bob = await fetch(`${base}/file?rt=${issued.jwt}`, { headers: { 'x-user': 'bob' } });
    expect([bob.status, (await bob.json()).error.code]).toEqual([403, 'AUDIENCE_MISMATCH']);
    const alice = await fetch(`${base}/file?rt=${issued.jwt}`, { headers: { 'x-user': 'alice' } });
    expect((await alice.json()).redemption.authenticateAs).toBe('alice');
  });

  it('calls login for a SESSION token only', async () => {
    use({ login: (userId) => void logins.push(userId) });
    const session = await issue({ scope: 'download', userId: 'carol', loginMode: 'SESSION' });
    const request = await issue({ scope: 'download', userId: 'dave', loginMode: 'REQUEST' });
    await fetch(`${base}/file?rt=${session.jwt}`);
    await fetch(`${base}/file?rt=${request.jwt}`);
    expect(logins).toEqual(['carol']);
  });

  it('trusts X-Forwarded-For only through trusted proxies', async () => {
    use({ trustProxy: ['127.0.0.1'] });
    const issued = await issue({ scope: 'download' });
    await fetch(`${base}/file?rt=${issued.jwt}`, { headers: { 'x-forwarded-for': '203.0.113.50' } });
    use({});
    const direct = await issue({ scope: 'download' });
    await fetch(`${base}/file?rt=${direct.jwt}`, { headers: { 'x-forwarded-for': '203.0.113.50' } });
    const ips = await server.sql('select token_id::text, client_ip from request_token_log where token_id in ($1, $2) order by id', [
      issued.token.id,
      direct.token.id,
    ]);
    expect(ips.map((r) => r.client_ip)).toEqual(['203.0.113.50', '127.0.0.1']);
  });

  it('hands an unreachable service to next(error) and never runs the handler unverified', async () => {
    use({ client: createRequestTokenClient({ url: 'http://127.0.0.1:1/graphql', apiKey: 'k', retries: 0 }) });
    const res = await fetch(`${base}/file?rt=a.b.c`);
    expect(res.status).toBe(503);
  });

  it('never fails or delays the response when recording the status fails', async () => {
    const failures: unknown[] = [];
    use({
      client: {
        redeemRequestToken: rt.redeemRequestToken,
        inspectRequestToken: rt.inspectRequestToken,
        recordResponseStatus: () => Promise.reject(new Error('down')),
      },
      onRecordError: (error) => failures.push(error),
    });
    const issued = await issue({ scope: 'download' });
    const res = await fetch(`${base}/file?rt=${issued.jwt}`);
    expect(res.status).toBe(200);
    await expect.poll(() => failures.length).toBe(1);
  });

  it('refuses options without client, scope or required at run time too', () => {
    expect(() => requestToken({ client: rt, scope: '', required: true })).toThrow(/scope/);
    expect(() => requestToken({ client: rt, scope: 's' } as never)).toThrow(/required/);
  });
});

describe('withRequestToken(), the fetch-API wrapper', () => {
  const publicUrl = 'https://shop.example';

  it('passes the Redemption and extra arguments to the handler, then records its status', async () => {
    const handler = withRequestToken(
      async (_request, { redemption }, ctx: { params: { id: string } }) =>
        Response.json({ user: redemption.authenticateAs, id: ctx.params.id }, { status: 202 }),
      { client: rt, scope: 'order', required: true, publicUrl },
    );
    const issued = await issue({ scope: 'order', userId: 'u7', loginMode: 'REQUEST', targetUrl: `${publicUrl}/orders/9` });
    const res = await handler(new Request(`http://internal:8080/orders/9?rt=${issued.jwt}`), { params: { id: '9' } });
    expect([res.status, await res.json()]).toEqual([202, { user: 'u7', id: '9' }]);
    expect(await recordedLogs(issued.token.id, 1)).toEqual([{ status_code: 202, error_code: null }]);
  });

  it('refuses with 403 and the code (recorded), or renders onRejected', async () => {
    const recordings: Promise<unknown>[] = [];
    const plain = withRequestToken(() => new Response('ok'), {
      client: rt,
      scope: 'order',
      required: true,
      waitUntil: (p) => void recordings.push(p),
    });
    const issued = await issue({ scope: 'order', maxUses: 1 });
    expect((await plain(new Request(`https://a.example/?rt=${issued.jwt}`))).status).toBe(200);
    const refused = await plain(new Request(`https://a.example/?rt=${issued.jwt}`));
    expect([refused.status, await refused.json()]).toEqual([403, { error: { code: 'MAX_USES_EXCEEDED', message: expect.any(String) } }]);
    const page = await plain(new Request(`https://a.example/?rt=${issued.jwt}`, { headers: { accept: 'text/html' } }));
    expect([page.status, page.headers.get('content-type')]).toEqual([403, 'text/html; charset=utf-8']);
    expect(await page.text()).toContain('<h1>This link has already been used</h1>');
    await Promise.all(recordings);
    expect(recordings).toHaveLength(3);
    expect(await recordedLogs(issued.token.id, 3)).toEqual([
      { status_code: 200, error_code: null },
      { status_code: 403, error_code: 'MAX_USES_EXCEEDED' },
      { status_code: 403, error_code: 'MAX_USES_EXCEEDED' },
    ]);

    const custom = withRequestToken(() => new Response('ok'), {
      client: rt,
      scope: 'order',
      required: true,
      onRejected: (rejection) => new Response(`sorry: ${rejection.code}`, { status: 404 }),
    });
    const missing = await custom(new Request('https://a.example/'));
    expect([missing.status, await missing.text()]).toEqual([404, 'sorry: TOKEN_MISSING']);
  });

  it('reads a token from a form POST and leaves the body to the handler', async () => {
    const handler = withRequestToken(async (request) => new Response(await request.text()), {
      client: rt,
      scope: 'order',
      required: false,
    });
    const issued = await issue({ scope: 'order' });
    const res = await handler(
      new Request('https://a.example/', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: `rt=${issued.jwt}&note=hi`,
      }),
    );
    expect([res.status, await res.text()]).toEqual([200, `rt=${issued.jwt}&note=hi`]);
    expect(await recordedLogs(issued.token.id, 1)).toEqual([{ status_code: 200, error_code: null }]);
  });

  it('adds the headers login returns for a SESSION token, even to an immutable response', async () => {
    const handler = withRequestToken(() => Response.redirect('https://a.example/account', 303), {
      client: rt,
      scope: 'login',
      required: true,
      login: (userId) => ({ 'set-cookie': `session=${userId}; HttpOnly` }),
    });
    const issued = await issue({ scope: 'login', userId: 'erin', loginMode: 'SESSION' });
    const res = await handler(new Request(`https://a.example/magic?rt=${issued.jwt}`));
    expect([res.status, res.headers.get('location'), res.headers.get('set-cookie')]).toEqual([
      303,
      'https://a.example/account',
      'session=erin; HttpOnly',
    ]);
  });

  it('records 500 when the handler throws, and rethrows', async () => {
    const handler = withRequestToken(
      () => {
        throw new Error('handler bug');
      },
      { client: rt, scope: 'order', required: true },
    );
    const issued = await issue({ scope: 'order' });
    await expect(handler(new Request(`https://a.example/?rt=${issued.jwt}`))).rejects.toThrow('handler bug');
    expect(await recordedLogs(issued.token.id, 1)).toEqual([{ status_code: 500, error_code: null }]);
  });
});
