/**
 * GraphiQL in headless Chromium: the API key is asked for once, above the editor, and nothing is sent before it is
 * there (so no 401 on opening the page); every request GraphiQL then makes, from any tab, carries it; a key entered
 * on the dashboard is used without asking again.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Request as BrowserRequest } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, skipWithoutChromium, type Browser } from './support/browser.js';
import { startTestServer, type TestServer } from './support/harness.js';
import { ROOT } from './support/process.js';

const skip = skipWithoutChromium('GraphiQL in Chromium (test/graphiql-page.test.ts)');
let server: TestServer;
let browser: Browser;
const graphqlRequests: { auth: string | null; status: number | null }[] = [];

beforeAll(async () => {
  if (skip) return;
  server = await startTestServer();
  browser = await launchChromium([server.url]);
  browser.page.on('requestfinished', async (request: BrowserRequest) => {
    if (request.method() !== 'POST' || !request.url().endsWith('/graphql')) return;
    const response = await request.response();
    graphqlRequests.push({ auth: (await request.allHeaders()).authorization ?? null, status: response?.status() ?? null });
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

/**
 * The tab strip animates its tabs into place (transforms), so a pointer click may land beside them: click the button
 * itself, until GraphiQL shows that tab.
 */
async function selectTab(name: string) {
  const { page } = browser;
  await expect
    .poll(async () => {
      await page.locator('.graphiql-tab-button', { hasText: name }).dispatchEvent('click');
      return page.locator('.graphiql-tab-active').innerText();
    })
    .toContain(name);
}

describe.skipIf(skip)('GraphiQL at /graphql', () => {
  it('asks for the key first and sends nothing before it', async () => {
    const { page } = browser;
    await page.goto(`${server.url}/graphql`);
    await page.locator('#rt-key-input').waitFor();
    await page.waitForTimeout(500);
    expect(graphqlRequests).toEqual([]);
    expect(await page.locator('.graphiql-container').count()).toBe(0);
    expect(await page.locator('#rt-key').innerText()).toContain('admin-api-key');
  });

  it('then starts GraphiQL, whose requests from every tab carry the key', async () => {
    const { page } = browser;
    await page.fill('#rt-key-input', server.apiKey);
    await page.click('#rt-key button[type=submit]');
    await page.locator('.graphiql-container').first().waitFor();
    // The schema is fetched with the key (introspection), so docs and completion work at once.
    await expect.poll(() => graphqlRequests.length).toBeGreaterThan(0);
    // Run "Issue" in the first tab, then switch to the statistics tab and run that one.
    await expect.poll(() => graphqlRequests.length).toBe(1);
    await page.locator('.graphiql-execute-button').click();
    await page.getByRole('menuitem', { name: 'Issue' }).click();
    await expect.poll(() => graphqlRequests.length).toBe(2);
    await expect.poll(() => page.locator('.graphiql-response').innerText()).toContain('CreateRequestTokenSuccess');
    await selectTab('UsageStats');
    // Headless Chromium now and then never reads the answer to this run, though the server has sent it whole (seen in
    // about two runs of three on 2026-11-30, with the fast path on and off); a person would press run again, and so
    // does this test, at most twice.
    for (let attempt = 0; attempt < 3; attempt++) {
      await page.locator('.graphiql-execute-button').click();
      const answered = await expect
        .poll(() => page.locator('.graphiql-response').innerText(), { timeout: 5_000 })
        .toContain('"usageStats"')
        .then(() => true, () => false);
      if (answered) break;
    }
    await expect.poll(() => page.locator('.graphiql-response').innerText()).toContain('"usageStats"');
    expect(graphqlRequests.length).toBeGreaterThanOrEqual(3);
    expect(graphqlRequests.every((r) => r.auth === `Bearer ${server.apiKey}` && r.status === 200)).toBe(true);
    expect(await page.locator('#rt-key').innerText()).toContain('is sent from every tab');
  });

  it('uses the key the dashboard keeps in this browser tab', async () => {
    const { page } = browser;
    await page.evaluate(() => sessionStorage.clear());
    await page.goto(`${server.url}/dashboard`);
    await page.fill('#api-key', server.apiKey);
    await page.click('#key-form button[type=submit]');
    await page.locator('#board').waitFor({ state: 'visible' });
    graphqlRequests.length = 0;
    await page.click('a[href="/graphql"]');
    await page.locator('.graphiql-container').first().waitFor();
    expect(await page.locator('#rt-key-input').count()).toBe(0);
    await expect.poll(() => graphqlRequests.length).toBeGreaterThan(0);
    expect(graphqlRequests.every((r) => r.auth === `Bearer ${server.apiKey}` && r.status === 200)).toBe(true);
  });

  it('wraps its welcome text within the editor and loads nothing from elsewhere', async () => {
    const { page } = browser;
    await selectTab('Issue');
    await page.locator('.graphiql-query-editor .view-line').first().waitFor();
    // Every line of the welcome text (the comment lines) ends inside the editor: no sideways scrolling to read it.
    const widest = await page.evaluate(() =>
      Math.max(
        ...[...document.querySelectorAll('.graphiql-query-editor .view-line > span')]
          .filter((text) => text.textContent!.trimStart().startsWith('#'))
          .map((text) => text.getBoundingClientRect().right),
      ),
    );
    await mkdir(join(ROOT, 'test-artifacts'), { recursive: true });
    await page.screenshot({ path: join(ROOT, 'test-artifacts', 'graphiql.png') });
    const editorRight = await page.evaluate(() => document.querySelector('.graphiql-query-editor')!.getBoundingClientRect().right);
    expect(widest).toBeGreaterThan(0);
    expect(widest).toBeLessThanOrEqual(editorRight);
    expect(browser.foreign).toEqual([]);
    expect(browser.problems.filter((p) => !/Monaco|worker/i.test(p))).toEqual([]);
  });
});
