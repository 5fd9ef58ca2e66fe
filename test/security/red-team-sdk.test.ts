import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRequestTokenClient, requestToken, withRequestToken, type RequestTokenClient } from '../../sdk/index.js';
import { startTestServer, type TestServer } from '../support/harness.js';
import { issueWith } from '../support/sdk.js';
import { withoutConsumption } from './support.js';

// Login CSRF through the SDK middleware (issue 17, item 12): an attacker holds a SESSION link of their own account
// and makes a victim's browser POST it from another site; the application then signs the victim in as the attacker.

let server: TestServer;
let rt: RequestTokenClient;
let app: Server;
let base: string;
const logins: string[] = [];

beforeAll(async () => {
  server = await startTestServer();
  rt = createRequestTokenClient({ url: server.graphqlUrl, apiKey: server.apiKey });
  const guard = requestToken({
    client: rt,
    scope: 'login',
    required: true,
    login: (userId) => void logins.push(userId),
  });
  app = createServer((req, res) =>
    guard(req, res, (error) => {
      res.statusCode = error ? 500 : 200;
      res.end(error ? String(error) : `served ${req.requestToken?.loginMode}`);
    }),
  );
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((r) => app?.close(r));
  await server?.close();
});

const malloryLink = async (loginMode: 'SESSION' | 'NONE' = 'SESSION') =>
  (await issueWith(rt, { scope: 'login', userId: 'mallory', loginMode, maxUses: 5 })).jwt;

const CROSS_SITE = [
  ['Sec-Fetch-Site: cross-site', { 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' }],
  ['an Origin of another site (no Fetch Metadata)', { origin: 'https://evil.example' }],
  ['Origin: null (a sandboxed page)', { origin: 'null' }],
] as const;

describe('the node middleware', () => {
  it.each(CROSS_SITE)('answers a cross-site POST of a SESSION link (%s) with the confirmation page, signing no one in', async (_name, headers) => {
    const jwt = await malloryLink();
    const before = logins.length;
    const res = await withoutConsumption(server, () =>
      fetch(`${base}/login?rt=${jwt}`, { method: 'POST', headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded' }, body: '' }),
    );
    expect(res.status).toBe(200);
    const html = await res.text();
    expect(html).toContain('<form method="post"');
    expect(html).not.toContain('served');
    expect(logins.length).toBe(before);
  });

  it('signs in when the confirmation is posted from the site itself', async () => {
    const jwt = await malloryLink();
    const res = await fetch(`${base}/login?rt=${jwt}`, { method: 'POST', headers: { 'sec-fetch-site': 'same-origin', origin: base } });
    expect(await res.text()).toBe('served SESSION');
    expect(logins.at(-1)).toBe('mallory');
  });

  it('still redeems a cross-site POST of a link that signs no one in (one-click unsubscribe)', async () => {
    const jwt = await malloryLink('NONE');
    const res = await fetch(`${base}/login?rt=${jwt}`, { method: 'POST', headers: { 'sec-fetch-site': 'cross-site', origin: 'https://mail.example' } });
    expect(await res.text()).toBe('served NONE');
  });

  it('still redeems a SESSION link opened from an e-mail (a GET) and a POST without browser headers', async () => {
    expect(await (await fetch(`${base}/login?rt=${await malloryLink()}`, { headers: { 'sec-fetch-site': 'cross-site' } })).text()).toBe('served SESSION');
    expect(await (await fetch(`${base}/login?rt=${await malloryLink()}`, { method: 'POST' })).text()).toBe('served SESSION');
  });
});

describe('the fetch adapter', () => {
  it('answers a cross-site POST of a SESSION link with the confirmation page, consuming nothing', async () => {
    const handler = withRequestToken(async (_request, { redemption }) => new Response(`served ${redemption.loginMode}`), {
      client: rt,
      scope: 'login',
      required: true,
    });
    const jwt = await malloryLink();
    const res = await withoutConsumption(server, () =>
      handler(new Request(`https://app.example/login?rt=${jwt}`, { method: 'POST', headers: { 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' } })),
    );
    expect(await res.text()).toContain('<form method="post"');
    const same = await handler(new Request(`https://app.example/login?rt=${jwt}`, { method: 'POST', headers: { origin: 'https://app.example' } }));
    expect(await same.text()).toBe('served SESSION');
  });
});
