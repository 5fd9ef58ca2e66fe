import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../server/domain/api-keys.js';
import { startTestServer, type TestServer } from './support/harness.js';
import { issue, redeem, RECORD } from './support/operations.js';
import { launchChromium, skipWithoutChromium, type Browser } from './support/browser.js';
import { ROOT } from './support/process.js';

const skip = skipWithoutChromium('the dashboard page in Chromium (test/dashboard-page.test.ts)');
const ARTIFACTS = join(ROOT, 'test-artifacts');
export const SCREENSHOT = join(ARTIFACTS, 'dashboard.png');

let server: TestServer;
let context: BrowserContext;
let page: Page;
let browser: Browser;
let problems: string[] = [];
let foreignRequests: string[] = [];
const seeded = { exhaustedJwt: '', exhaustedId: '', weekRedemptions: 0, weekRefusals: 0, weekIssued: 0 };

// A realistic week: a few tokens issued and redeemed through the API today (so refusals, statuses and history are the
// service's own), plus older activity inserted with explicit timestamps over the previous six days.
async function seed() {
  const DAY = 86_400_000;
  // Days 5 to 1 before today: inside the 7-day window even if the UTC day turns during the test.
  for (let day = 5; day >= 1; day--) {
    for (const [scope, issued, used, refused] of [
      ['newsletter-unsubscribe', 9 - day, 6 - (day % 3), day % 2],
      ['password-reset', 3 + (day % 3), 2 + (day % 2), (day + 1) % 3],
      ['invite', 1 + (day % 2), 1, day === 3 ? 2 : 0],
    ] as const) {
      const at = new Date(Math.floor(Date.now() / DAY) * DAY - day * DAY + 9 * 3_600_000 + scope.length * 60_000);
      const ids = await server.sql(
        `insert into request_token (client_id, scope, max_uses, used_to_date, issued_at, user_id)
         select 1, $1, 5, 1, $2::timestamptz + i * interval '7 minutes', 'user-' || i from generate_series(1, $3::int) i returning id`,
        [scope, at, issued],
      );
      await server.sql(
        `insert into request_token_log (token_id, user_id, client_ip, status_code, timestamp)
         select $1, 'user-' || i, '198.51.100.' || i, case when i % 5 = 0 then 302 else 200 end,
           $2::timestamptz + interval '2 hours' + i * interval '13 minutes'
         from generate_series(1, $3::int) i`,
        [ids[0].id, at, used],
      );
      await server.sql(
        `insert into request_token_log (token_id, error_code, client_ip, status_code, timestamp)
         select $1, (array['TOKEN_EXPIRED', 'MAX_USES_EXCEEDED', 'SCOPE_MISMATCH'])[1 + i % 3], '203.0.113.9', 410,
           $2::timestamptz + interval '3 hours' + i * interval '17 minutes'
         from generate_series(1, $3::int) i`,
        [ids[0].id, at, refused],
      );
      seeded.weekIssued += issued;
      seeded.weekRedemptions += used;
      seeded.weekRefusals += refused;
    }
  }

  const unsubscribe = await issue(server, {
    scope: 'newsletter-unsubscribe',
    userId: '42',
    loginMode: 'REQUEST',
    targetUrl: 'https://news.example.com/unsubscribe?list=weekly',
    maxUses: 1,
  });
  const ok = await redeem(server, {
    jwt: unsubscribe.jwt,
    scope: 'newsletter-unsubscribe',
    url: 'https://news.example.com/unsubscribe?list=weekly',
    userId: '42',
    clientIp: '192.0.2.10',
    userAgent: 'Mozilla/5.0 (dashboard test)',
  });
  await server.gql(RECORD, { input: { redemptionId: ok.id, statusCode: 200 } });
  const again = await redeem(server, {
    jwt: unsubscribe.jwt,
    scope: 'newsletter-unsubscribe',
    url: 'https://news.example.com/unsubscribe?list=weekly',
    clientIp: '192.0.2.10',
  });
  await server.gql(RECORD, { input: { redemptionId: again.logId, statusCode: 410 } });
  seeded.exhaustedJwt = unsubscribe.jwt;
  seeded.exhaustedId = unsubscribe.token.id;

  const reset = await issue(server, { scope: 'password-reset', userId: 'ann', maxUses: 3 });
  await redeem(server, { jwt: reset.jwt, scope: 'password-reset', userId: 'ann', clientIp: '192.0.2.11' });
  await redeem(server, { jwt: reset.jwt, scope: 'invite', clientIp: '192.0.2.12' });
  // Another signed-in user tries ann's link: the log row names both.
  await redeem(server, { jwt: reset.jwt, scope: 'password-reset', userId: 'mallory', clientIp: '192.0.2.14' });
  await redeem(server, { jwt: 'not-a-jwt', scope: 'invite', clientIp: '192.0.2.13' });
  await issue(server, { scope: 'invite', userId: 'bob' });
  seeded.weekIssued += 3;
  seeded.weekRedemptions += 2;
  seeded.weekRefusals += 4;
}


beforeAll(async () => {
  if (skip) return;
  server = await startTestServer();
  await seed();
  // The page must work offline: anything that is not this server is refused and recorded (browser.foreign).
  browser = await launchChromium([server.url], { width: 1440, height: 900 });
  ({ context, page, problems, foreign: foreignRequests } = browser);
  page.on('dialog', (dialog) => void dialog.accept());
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

const text = (selector: string) => page.locator(selector).innerText();
const chartTotal = (id: string, dataset: number) =>
  page.evaluate(
    ([id, dataset]) => {
      const chart = (globalThis as any).Chart.getChart(id);
      return (chart.data.datasets[dataset].data as number[]).reduce((a, b) => a + b, 0);
    },
    [id, dataset] as const,
  );

describe.skipIf(skip)('the /dashboard page in headless Chromium', () => {
  it('asks for a key, then shows charts and the log table from real data', async () => {
    await page.goto(`${server.url}/dashboard`);
    await expect.poll(() => page.locator('#welcome').isVisible()).toBe(true);
    expect(await page.locator('#board').isVisible()).toBe(false);
    const icon = await page.locator('link[rel=icon]').getAttribute('href');
    expect((await fetch(new URL(icon!, server.url))).headers.get('content-type')).toBe('image/svg+xml');

    await page.fill('#api-key', server.apiKey);
    await page.click('#key-form button[type=submit]');
    await page.locator('#board').waitFor({ state: 'visible' });
    // A new install has today's data: the page opens on the last 24 hours. The seeded week is two clicks away.
    expect(await page.locator('[data-range="24h"]').getAttribute('aria-pressed')).toBe('true');
    await page.click('[data-range="7d"]');
    await expect.poll(() => text('#kpi-redemptions')).toBe(String(seeded.weekRedemptions));
    expect(await text('#kpi-refusals')).toBe(String(seeded.weekRefusals));
    expect(await text('#kpi-issued')).toBe(String(seeded.weekIssued));
    expect(await text('#viewer-name')).toBe('test admin');

    // The charts hold the same numbers: redemptions and refusals over the seven days, reasons, statuses.
    expect(await chartTotal('chart-time', 0)).toBe(seeded.weekRedemptions);
    expect(await chartTotal('chart-time', 1)).toBe(seeded.weekRefusals);
    expect(await chartTotal('chart-reasons', 0)).toBe(seeded.weekRefusals);
    const [{ n: attempts }] = await server.sql(`select count(*)::int as n from request_token_log`);
    expect(await chartTotal('chart-status', 0)).toBe(attempts);
    const labels = await page.evaluate(() => (globalThis as any).Chart.getChart('chart-scopes').data.labels);
    expect(labels).toEqual(expect.arrayContaining(['newsletter-unsubscribe', 'password-reset', 'invite', '(no token)']));

    // The table: newest entry first, exactly as stored.
    const [newest] = await server.sql(`select * from request_token_log order by id desc limit 1`);
    const firstRow = page.locator('#logs tbody tr').first();
    await expect.poll(() => firstRow.locator('td').nth(1).innerText()).toBe('Token malformed');
    expect(await firstRow.locator('td').nth(5).innerText()).toBe(newest.client_ip);
    expect(await page.locator('#logs tbody tr').count()).toBe(15);
    // The user column: the token's user, and the signed-in user who tried it when that is someone else.
    const users = await page.locator('#logs tbody tr td:nth-child(5)').allInnerTexts();
    expect(users).toEqual(expect.arrayContaining(['ann', 'ann (mallory)', '42']));
    expect(await text('#logs-count')).toBe(`${attempts} entries`);
  });

  it('filters and pages the log table', async () => {
    await page.selectOption('#log-filters select[name=outcome]', 'refused');
    await expect.poll(() => text('#logs-count')).toBe(`${seeded.weekRefusals} entries`);
    const outcomes = await page.locator('#logs tbody tr td:nth-child(2)').allInnerTexts();
    expect(outcomes.every((o) => o !== 'Redeemed')).toBe(true);

    await page.selectOption('#log-filters select[name=outcome]', '');
    await expect.poll(() => page.locator('#older').isEnabled()).toBe(true);
    const firstPage = await page.locator('#logs tbody tr td:first-child').allInnerTexts();
    await page.click('#older');
    await expect.poll(() => text('#page-info')).toMatch(/^16–30 of /);
    const secondPage = await page.locator('#logs tbody tr td:first-child').allInnerTexts();
    expect(secondPage).toHaveLength(15);
    expect(secondPage).not.toEqual(firstPage);
    await page.click('#newer');
    await expect.poll(() => text('#page-info')).toMatch(/^1–15 of /);
  });

  it('looks up a pasted JWT with its status and history, then saves a screenshot', async () => {
    await page.fill('#lookup-jwt', seeded.exhaustedJwt);
    await page.click('#lookup-form button[type=submit]');
    await expect.poll(() => text('#lookup-result .lookup-head')).toContain(`Token #${seeded.exhaustedId}`);
    expect(await text('#lookup-result .lookup-head .badge')).toBe('Exhausted');
    expect(await text('#lookup-result h3')).toBe('History (2)');
    expect(await page.locator('#lookup-result ul.history li').count()).toBe(2);
    expect(await page.locator('#revoke-token').isVisible()).toBe(true);

    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  });

  it('revokes the looked-up token when the key may revoke', async () => {
    await page.click('#revoke-token');
    await expect.poll(() => text('#lookup-result .lookup-head .badge')).toBe('Revoked');
    const [row] = await server.sql(`select revoked_at from request_token where id = $1`, [seeded.exhaustedId]);
    expect(row.revoked_at).not.toBeNull();
    expect(await page.locator('#revoke-token').count()).toBe(0);
  });

  it('keeps the key in this tab only, and offers no revoke button to a read-only key', async () => {
    await page.reload();
    await page.locator('#board').waitFor({ state: 'visible' });
    const storage = await page.evaluate(() => ({ session: sessionStorage.length, local: localStorage.length }));
    expect(storage).toEqual({ session: 1, local: 0 });
    expect(await context.cookies()).toEqual([]);

    const { key: readKey } = await createApiKey(server.db.orm.em.fork(), { name: 'analyst', permissions: ['read'], clientId: '1' });
    await page.click('#sign-out');
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    await page.fill('#api-key', readKey);
    await page.click('#key-form button[type=submit]');
    await expect.poll(() => text('#viewer-name')).toBe('analyst');
    await page.fill('#lookup-jwt', seeded.exhaustedJwt);
    await page.click('#lookup-form button[type=submit]');
    await expect.poll(() => text('#lookup-result .lookup-head')).toContain(`Token #${seeded.exhaustedId}`);
    expect(await page.locator('#revoke-token').count()).toBe(0);
  });

  it('says so when a key is refused', async () => {
    await page.click('#sign-out');
    await page.fill('#api-key', 'rt_nosuchkey_0123456789abcdef0123456789abcdef');
    await page.click('#key-form button[type=submit]');
    await expect.poll(() => text('#key-error')).toContain('That key was refused');
    expect(await page.locator('#board').isVisible()).toBe(false);
  });

  it('loaded nothing from elsewhere and logged no errors', () => {
    expect(foreignRequests).toEqual([]);
    // The refused key answers 401, which Chromium reports on the console; nothing else may appear.
    expect(problems.filter((p) => !p.includes('401'))).toEqual([]);
  });
});
