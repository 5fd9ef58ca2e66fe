/**
 * The newsletter example as a reader meets it, in headless Chromium: the unsubscribe link opens a confirmation page,
 * "Continue" unsubscribes, and the same link clicked again shows a page that says, in plain words, why it no longer
 * works. The log has the story: 200 for the confirmed click, 403 MAX_USES_EXCEEDED for the second one.
 */
import type { Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRequestTokenClient } from '@request-token/sdk';
import { createNewsletterApp } from '../../examples/newsletter/app.js';
import { launchChromium, skipWithoutChromium, type Browser } from '../support/browser.js';
import { startTestServer, type TestServer } from '../support/harness.js';
import { freePort } from '../support/ports.js';

const skip = skipWithoutChromium('the newsletter example in Chromium (test/examples/newsletter-browser.test.ts)');
let service: TestServer;
let newsletter: Server;
let browser: Browser;
let link: string;

beforeAll(async () => {
  if (skip) return;
  service = await startTestServer();
  const client = createRequestTokenClient({ url: service.graphqlUrl, apiKey: service.apiKey });
  const port = await freePort();
  const publicUrl = `http://127.0.0.1:${port}`;
  const { app, send } = createNewsletterApp({ client, publicUrl, subscribers: [{ id: '7', email: 'ada@example.com' }] });
  newsletter = await new Promise<Server>((resolve) => {
    const server = app.listen(port, '127.0.0.1', () => resolve(server));
  });
  [{ link }] = await send();
  browser = await launchChromium([publicUrl]);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  newsletter?.closeAllConnections();
  await new Promise((r) => (newsletter ? newsletter.close(r) : r(null)));
  await service?.close();
});

const tokenLog = () =>
  service.sql(
    `select l.status_code, l.error_code from request_token_log l join request_token t on t.id = l.token_id
     where t.user_id = '7' order by l.id`,
  );

describe.skipIf(skip)('the newsletter example in a browser', () => {
  it('shows a confirmation page, unsubscribes on Continue, and says done', async () => {
    const { page } = browser;
    const opened = await page.goto(link);
    expect(opened!.status()).toBe(200);
    expect(await page.locator('h1').innerText()).toBe('Please confirm');
    expect(await tokenLog()).toEqual([]); // looking consumed nothing
    await page.getByRole('button', { name: 'Continue' }).click();
    await expect.poll(() => page.locator('body').innerText()).toContain('ada@example.com will get no more of this newsletter.');
    await expect.poll(tokenLog).toEqual([{ status_code: 200, error_code: null }]);
  });

  it('answers the second click with a page a reader understands', async () => {
    const { page } = browser;
    const again = await page.goto(link);
    expect(again!.status()).toBe(403);
    expect(again!.headers()['content-type']).toBe('text/html; charset=utf-8');
    expect(await page.locator('h1').innerText()).toBe('This link has already been used');
    expect(await page.locator('main').innerText()).toContain('Reason: MAX_USES_EXCEEDED');
    expect(browser.foreign).toEqual([]);
    expect(browser.problems.filter((p) => !p.includes('403'))).toEqual([]);
  });
});
