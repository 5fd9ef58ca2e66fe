/**
 * End to end: the real service, the newsletter example as its own process (`npm run example:newsletter`), and
 * subscribers clicking the unsubscribe links in the "sent" newsletter: twice, after a mail scanner, and through the
 * mail provider's one-click button.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRequestTokenClient, type RequestTokenClient } from '@request-token/sdk';
import { startTestServer, type TestServer } from '../support/harness.js';
import { freePort } from '../support/ports.js';
import { ROOT } from '../support/process.js';

let service: TestServer;
let rt: RequestTokenClient;
let example: ChildProcess;
let output = '';
let base: string;

/** Waits until the example has printed `count` unsubscribe links, and returns them by recipient. */
async function sentLinks(count: number, timeoutMs = 30_000): Promise<Map<string, string>> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    const links = new Map([...output.matchAll(/^To: (\S+)\s+Unsubscribe: (\S+)$/gm)].map((m) => [m[1], m[2]]));
    if (links.size >= count) return links;
    if (example.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the example did not send ${count} links:\n${output}`);
}

beforeAll(async () => {
  service = await startTestServer();
  rt = createRequestTokenClient({ url: service.graphqlUrl, apiKey: service.apiKey });
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  example = spawn(process.execPath, ['--import', 'tsx', 'examples/newsletter/main.ts'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      REQUEST_TOKEN_URL: service.graphqlUrl,
      REQUEST_TOKEN_API_KEY: service.apiKey,
      PORT: String(port),
      HOST: '127.0.0.1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  example.stdout!.on('data', (chunk) => (output += chunk));
  example.stderr!.on('data', (chunk) => (output += chunk));
}, 120_000);

afterAll(async () => {
  if (example && example.exitCode === null) {
    const exited = new Promise((r) => example.once('exit', r));
    example.kill('SIGTERM');
    await exited;
  }
  await service?.close();
});

const emails = async () => ((await (await fetch(`${base}/subscribers`)).json()) as { email: string }[]).map((s) => s.email);

/** What a person does: open the link, read the confirmation page, press its button (a form POST to `action`). */
async function click(link: string): Promise<Response> {
  const page = await fetch(link);
  expect(page.status).toBe(200);
  const html = await page.text();
  expect(html).not.toMatch(/<script|http-equiv/i);
  const action = /<form method="post" action="([^"]+)">/.exec(html)![1].replaceAll('&amp;', '&');
  return fetch(new URL(action, link), { method: 'POST' });
}

describe('the newsletter example', () => {
  it('unsubscribes through the link once, refuses the second click, and the log shows 200 then the refusal', async () => {
    const links = await sentLinks(3);
    const link = links.get('ada@example.com')!;
    expect(link.startsWith(`${base}/unsubscribe?list=weekly&rt=`)).toBe(true);
    expect(await emails()).toEqual(['ada@example.com', 'alan@example.com', 'grace@example.com']);

    const first = await click(link);
    expect(first.status).toBe(200);
    expect(await first.text()).toMatch(/ada@example.com will get no more/);
    expect(await emails()).toEqual(['alan@example.com', 'grace@example.com']);

    const second = await fetch(link, { method: 'POST' });
    expect(second.status).toBe(403);
    expect(await second.json()).toEqual({ error: { code: 'MAX_USES_EXCEEDED', message: expect.any(String) } });

    // The token's log through the SDK: newest first, both responses recorded once they were sent.
    const jwt = new URL(link).searchParams.get('rt')!;
    const tokenId = JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString()).jti as string;
    let statuses: [number | null, string | null][] = [];
    await expect
      .poll(async () => {
        const logs = await rt.requestTokenLogs({ filter: { tokenId } });
        statuses = logs.edges.map((e) => [e.node.statusCode, e.node.errorCode] as [number | null, string | null]).reverse();
        return statuses;
      })
      .toEqual([
        [200, null],
        [403, 'MAX_USES_EXCEEDED'],
      ]);
    // The other subscribers' links were never used.
    expect((await emails()).length).toBe(2);
  });

  it('refuses a request without a token, and a link opened on another URL than its target', async () => {
    const missing = await fetch(`${base}/unsubscribe?list=weekly`);
    expect([missing.status, (await missing.json()).error.code]).toEqual([403, 'TOKEN_MISSING']);
    const alan = (await sentLinks(3)).get('alan@example.com')!;
    // The link is bound to /unsubscribe?list=weekly: another list is refused and consumes nothing.
    const wrongList = new URL(alan);
    wrongList.searchParams.set('list', 'daily');
    expect((await fetch(wrongList)).status).toBe(403);
    expect((await fetch(alan)).status).toBe(200);
    expect(await emails()).toContain('alan@example.com');
  });

  it('survives a mail scanner that fetches the link with HEAD and GET before the person clicks it', async () => {
    const alan = (await sentLinks(3)).get('alan@example.com')!;
    const scanner = { 'user-agent': 'Mozilla/5.0 (compatible; SafeLinks link checker)' };
    for (let pass = 0; pass < 2; pass++) {
      expect((await fetch(alan, { method: 'HEAD', headers: scanner })).status).toBe(200);
      const page = await fetch(alan, { headers: scanner });
      expect(page.status).toBe(200);
      // Nothing a scanner that runs scripts could be made to do: no script may run, nothing redirects.
      expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
      expect(await page.text()).not.toMatch(/<script|http-equiv|onload/i);
    }
    expect(await emails()).toContain('alan@example.com');
    const clicked = await click(alan);
    expect(clicked.status).toBe(200);
    expect(await clicked.text()).toMatch(/alan@example.com will get no more/);
    expect(await emails()).not.toContain('alan@example.com');
    const uses = await service.sql(
      `select count(*)::int as n from request_token_log l join request_token t on t.id = l.token_id
       where t.user_id = '2' and l.error_code is null`,
    );
    expect(uses[0].n).toBe(1);
  });

  it("unsubscribes through the mail provider's one-click button (RFC 8058), without cookies", async () => {
    await sentLinks(3);
    const headers = /^To: grace@example.com .*\n {2}List-Unsubscribe: <([^>]+)>\n {2}List-Unsubscribe-Post: (.+)$/m.exec(output)!;
    expect(headers[2]).toBe('List-Unsubscribe=One-Click');
    const res = await fetch(headers[1], {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: headers[2],
    });
    expect(res.status).toBe(200);
    expect(await emails()).not.toContain('grace@example.com');
  });
});
