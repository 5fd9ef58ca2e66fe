import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createRequestTokenClient,
  listUnsubscribeHeaders,
  ONE_CLICK_BODY,
  requestToken,
  withRequestToken,
  type RequestTokenClient,
  type RequestTokenMiddlewareOptions,
  type WithRequestTokenOptions,
} from '@request-token/sdk';
import { startTestServer, type TestServer } from '../support/harness.js';
import { issueWith } from '../support/sdk.js';

// Links opened by email security scanners before the person, retries, and failed responses, through both adapters.
let server: TestServer;
let rt: RequestTokenClient;

beforeAll(async () => {
  server = await startTestServer({ DB_LOCK_TIMEOUT_MS: '200' });
  rt = createRequestTokenClient({ url: server.graphqlUrl, apiKey: server.apiKey });
});
afterAll(() => server?.close());

const issue = (input: Parameters<RequestTokenClient['createRequestToken']>[0]) => issueWith(rt, input);

async function state(tokenId: string) {
  const [token] = await server.sql('select used_to_date from request_token where id = $1', [tokenId]);
  const logs = await server.sql(
    'select error_code, status_code, released_at from request_token_log where token_id = $1 order by id',
    [tokenId],
  );
  return { used: token.used_to_date as number, logs };
}

/** What a scanner does with every link in a mail: HEAD it, GET it (following nothing a script would do). */
async function scan(link: string) {
  const head = await fetch(link, { method: 'HEAD', headers: { 'user-agent': 'SafeLinks-Scanner' } });
  const get = await fetch(link, { headers: { 'user-agent': 'SafeLinks-Scanner' } });
  return { head, get, html: await get.text() };
}

function expectInertPage(res: Response, html: string) {
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/html/);
  expect(res.headers.get('cache-control')).toBe('no-store');
  expect(res.headers.get('content-security-policy')).toContain("default-src 'none'");
  expect(html).toMatch(/<form method="post" action="[^"]+">/);
  expect(html).not.toMatch(/<script|http-equiv|onload|javascript:/i);
}

describe('requestToken() on a node:http server', () => {
  let app: Server;
  let base: string;
  let options: RequestTokenMiddlewareOptions;

  function handle(req: IncomingMessage, res: ServerResponse) {
    requestToken(options)(req, res, (error) => {
      if (error) {
        res.statusCode = 503;
        res.end(String(error));
        return;
      }
      const status = Number(new URL(req.url!, 'http://x').searchParams.get('status') ?? 200);
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ method: req.method, redemption: req.requestToken ?? null }));
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
  const use = (over: Partial<RequestTokenMiddlewareOptions> = {}) => {
    options = { client: rt, scope: 'unsubscribe', required: true, ...over };
  };

  it('never consumes on HEAD or OPTIONS, even without confirm', async () => {
    use();
    const issued = await issue({ scope: 'unsubscribe', maxUses: 1, targetUrl: `${base}/u?list=7` });
    const head = await fetch(issued.url!, { method: 'HEAD' });
    expect(head.status).toBe(200);
    const options_ = await fetch(issued.url!, { method: 'OPTIONS' });
    expect(options_.status).toBe(204);
    expect(options_.headers.get('allow')).toBe('GET, HEAD, POST, OPTIONS');
    expect(await state(issued.token.id)).toEqual({ used: 0, logs: [] });
    expect((await fetch(issued.url!)).status).toBe(200); // the person's GET redeems
    expect((await fetch(issued.url!, { method: 'HEAD' })).status).toBe(403); // and HEAD now sees it used
  });

  it('with confirm, answers scanners with an inert confirmation page and redeems only the POST, once', async () => {
    use({ confirm: true });
    const issued = await issue({ scope: 'unsubscribe', maxUses: 1, targetUrl: `${base}/u?list=7` });
    const scanned = await scan(issued.url!);
    expect(scanned.head.status).toBe(200);
    expectInertPage(scanned.get, scanned.html);
    await scan(issued.url!); // scanners come back
    expect(await state(issued.token.id)).toEqual({ used: 0, logs: [] });

    // The person opens the link, sees the page and presses the button.
    const page = await (await fetch(issued.url!)).text();
    const action = new URL(/action="([^"]+)"/.exec(page)![1].replaceAll('&amp;', '&'), base).toString();
    expect(action).toBe(issued.url);
    const pressed = await fetch(action, { method: 'POST' });
    expect(pressed.status).toBe(200);
    expect(await pressed.json()).toMatchObject({ method: 'POST', redemption: { __typename: 'Redemption', usesRemaining: 0 } });
    const again = await fetch(action, { method: 'POST' });
    expect(again.status).toBe(403);
    expect((await fetch(issued.url!)).status).toBe(403); // the page is no longer offered
    const after = await state(issued.token.id);
    expect(after.used).toBe(1);
    expect(after.logs.map((l) => l.error_code)).toEqual([null, 'MAX_USES_EXCEEDED']);
  });

  it('renders a custom confirmation page, still without script', async () => {
    use({ confirm: true, renderConfirmation: ({ action, inspection }) => `<form method="post" action="${action}">${inspection.usesRemaining} left</form>` });
    const issued = await issue({ scope: 'unsubscribe', maxUses: 2 });
    const res = await fetch(`${base}/u?rt=${issued.jwt}`);
    expect(await res.text()).toBe(`<form method="post" action="/u?rt=${issued.jwt}">2 left</form>`);
    expect(res.headers.get('content-security-policy')).toContain("default-src 'none'");
  });

  it('accepts the RFC 8058 one-click POST without cookies or CSRF token', async () => {
    use({ confirm: true });
    const issued = await issue({ scope: 'unsubscribe', maxUses: 1, targetUrl: `${base}/u?list=7` });
    const headers = listUnsubscribeHeaders(issued.url!, { mailto: 'unsubscribe@example.com' });
    expect(headers).toEqual({
      'List-Unsubscribe': `<${issued.url}>, <mailto:unsubscribe@example.com>`,
      'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click',
    });
    const target = /^<([^>]+)>/.exec(headers['List-Unsubscribe'])![1];
    const res = await fetch(target, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: ONE_CLICK_BODY,
    });
    expect(res.status).toBe(200);
    expect((await res.json()).redemption.__typename).toBe('Redemption');
  });

  it('gives the use back when the handler answers 5xx, once, and keeps it with releaseOnServerError: false', async () => {
    use();
    const issued = await issue({ scope: 'unsubscribe', maxUses: 1 });
    expect((await fetch(`${base}/u?status=503&rt=${issued.jwt}`)).status).toBe(503);
    await expect.poll(async () => (await state(issued.token.id)).used).toBe(0);
    const released = await state(issued.token.id);
    expect(released.logs).toEqual([{ error_code: null, status_code: 503, released_at: expect.any(Date) }]);
    expect((await fetch(`${base}/u?rt=${issued.jwt}`)).status).toBe(200); // the link still works

    use({ releaseOnServerError: false });
    const kept = await issue({ scope: 'unsubscribe', maxUses: 1 });
    expect((await fetch(`${base}/u?status=500&rt=${kept.jwt}`)).status).toBe(500);
    await expect.poll(async () => (await state(kept.token.id)).logs[0]?.status_code).toBe(500);
    expect(await state(kept.token.id)).toMatchObject({ used: 1, logs: [{ released_at: null }] });
  });

  it('sends an idempotency key with every redemption', async () => {
    use();
    const issued = await issue({ scope: 'unsubscribe', maxUses: 2 });
    await fetch(`${base}/u?rt=${issued.jwt}`);
    await fetch(`${base}/u?rt=${issued.jwt}`);
    const keys = await server.sql('select key from request_token_idempotency where token_id = $1', [issued.token.id]);
    expect(keys).toHaveLength(2);
    expect(keys[0].key).not.toBe(keys[1].key);
  });
});

describe('withRequestToken(), the fetch-API wrapper', () => {
  const wrap = (over: Partial<WithRequestTokenOptions<true>> = {}) =>
    withRequestToken(
      async (request, { redemption }) => {
        if (new URL(request.url).searchParams.has('fail')) throw new Error('handler failed');
        return Response.json({ method: request.method, id: redemption.id });
      },
      { client: rt, scope: 'confirm', required: true, ...over },
    );

  it('inspects on HEAD, OPTIONS and a confirm GET, and redeems the POST', async () => {
    const handler = wrap({ confirm: true });
    const issued = await issue({ scope: 'confirm', maxUses: 1 });
    const link = `https://app.example/c?rt=${issued.jwt}`;
    expect((await handler(new Request(link, { method: 'HEAD' }))).status).toBe(200);
    expect((await handler(new Request(link, { method: 'OPTIONS' }))).status).toBe(204);
    const page = await handler(new Request(link));
    expectInertPage(page, await page.text());
    expect(await state(issued.token.id)).toEqual({ used: 0, logs: [] });
    const posted = await handler(new Request(link, { method: 'POST' }));
    expect(await posted.json()).toMatchObject({ method: 'POST' });
    expect((await state(issued.token.id)).used).toBe(1);
  });

  it('gives the use back when the handler throws', async () => {
    const handler = wrap();
    const issued = await issue({ scope: 'confirm', maxUses: 1 });
    await expect(handler(new Request(`https://app.example/c?fail=1&rt=${issued.jwt}`))).rejects.toThrow('handler failed');
    await expect.poll(async () => (await state(issued.token.id)).used).toBe(0);
  });
});

describe('the SDK client', () => {
  it('retries a keyed redemption on a retryable 503 (row locked) and it counts once', async () => {
    const issued = await issue({ scope: 'retry', maxUses: 3 });
    const locker = new pg.Client({ connectionString: server.databaseUrl });
    await locker.connect();
    await locker.query('begin');
    await locker.query('select 1 from request_token where id = $1 for update', [issued.token.id]);
    const client = createRequestTokenClient({ url: server.graphqlUrl, apiKey: server.apiKey, retries: 3, retryDelayMs: 100 });
    const pending = client.redeemRequestToken({ jwt: issued.jwt, scope: 'retry', idempotencyKey: 'once' });
    setTimeout(() => void locker.query('rollback').then(() => locker.end()), 350);
    const result = await pending;
    expect(result.__typename).toBe('Redemption');
    expect((await state(issued.token.id)).used).toBe(1);
  });

  it('does not retry an unkeyed redemption on a 503', async () => {
    const issued = await issue({ scope: 'retry', maxUses: 3 });
    const locker = new pg.Client({ connectionString: server.databaseUrl });
    await locker.connect();
    await locker.query('begin');
    await locker.query('select 1 from request_token where id = $1 for update', [issued.token.id]);
    try {
      const client = createRequestTokenClient({ url: server.graphqlUrl, apiKey: server.apiKey, retries: 3 });
      await expect(client.redeemRequestToken({ jwt: issued.jwt, scope: 'retry' })).rejects.toMatchObject({ kind: 'server' });
    } finally {
      await locker.query('rollback');
      await locker.end();
    }
  });
});
