import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

/** Debian's chromium (apt-get install chromium; .ci/run installs it when missing), or CHROMIUM_PATH. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/**
 * Whether a browser test file skips: only when there is no Chromium and CI is not set. It says so on stderr, so a
 * machine without Chromium runs `npm test` green but not silently; with CI set, a missing Chromium fails the tests.
 */
export function skipWithoutChromium(what: string): boolean {
  if (existsSync(CHROMIUM) || process.env.CI) return false;
  process.stderr.write(
    `\n  NOTICE: ${what}: SKIPPED, no Chromium at ${CHROMIUM}. Install it (apt-get install chromium) or set ` +
      'CHROMIUM_PATH; with CI set these tests fail instead of skipping.\n\n',
  );
  return true;
}

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface Browser {
  context: BrowserContext;
  page: Page;
  /** Console errors and warnings, and uncaught page errors. */
  problems: string[];
  /** Requests to anything but the allowed origins (refused). */
  foreign: string[];
  close(): Promise<void>;
}

/** A fresh headless Chromium profile that may load only `origins` and records what goes wrong on its pages. */
export async function launchChromium(
  origins: string[],
  viewport: { width: number; height: number } = { width: 1280, height: 860 },
): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: run \`apt-get install -y chromium\` (or set CHROMIUM_PATH)`);
  }
  const profile = await mkdtemp(join(tmpdir(), 'rt-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport,
    deviceScaleFactor: 1,
  });
  const problems: string[] = [];
  const foreign: string[] = [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (origins.some((origin) => url.startsWith(origin)) || url.startsWith('data:') || url.startsWith('blob:')) {
      return route.continue();
    }
    foreign.push(url);
    return route.abort();
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') problems.push(`${message.type()}: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
  return {
    context,
    page,
    problems,
    foreign,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}
