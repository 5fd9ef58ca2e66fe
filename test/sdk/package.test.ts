/**
 * The SDK as a client backend gets it: `npm pack` in sdk/ (which builds dist/ through prepack), the tarball installed
 * into an empty project, an ESM (.mts) and a CommonJS (.cts) consumer type-checked under `strict` with
 * `moduleResolution: nodenext`, compiled, and run against the real service: issue → redeem → record.
 * The install uses npm's cache when it can (`--prefer-offline`); after `npm ci` everything is in it.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/harness.js';
import { ROOT } from '../support/process.js';

const run = promisify(execFile);
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');
const MAX_INSTALLED_BYTES = 15 * 1024 * 1024;

let consumer: string;
let server: TestServer;

/** Bytes on disk under `dir` (what `du` counts), following no links. */
async function diskUsage(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    const info = await stat(path);
    total += info.blocks * 512;
    if (entry.isDirectory()) total += await diskUsage(path);
  }
  return total;
}

// The story, written as a client would: strict-clean, `issued.url` handled when null.
const STORY = (load: string) => `${load}

async function main(url: string, apiKey: string): Promise<string> {
  const rt = createRequestTokenClient({ url, apiKey });
  const targetUrl = 'https://news.example.com/unsubscribe?list=weekly';
  const issued = await rt.createRequestToken({ scope: 'unsubscribe', userId: '42', loginMode: 'REQUEST', targetUrl });
  if (issued.__typename !== 'CreateRequestTokenSuccess') throw new Error(issued.message);
  const link: string = issued.url ?? tokenise(targetUrl, issued.jwt);
  const redeemed = await rt.redeemRequestToken({ jwt: issued.jwt, scope: 'unsubscribe', url: link });
  if (redeemed.__typename !== 'Redemption') throw new Error(redeemed.code);
  const recorded = await rt.recordResponseStatus({ redemptionId: redeemed.id, statusCode: 200 });
  const again = await rt.redeemRequestToken({ jwt: issued.jwt, scope: 'unsubscribe', url: link });
  const code: RejectionCode | null = again.__typename === 'Redemption' ? null : again.code;
  try {
    await createRequestTokenClient({ url, apiKey: 'rt_x_wrong' }).requestTokens();
  } catch (error) {
    if (!isRequestTokenClientError(error)) throw error;
    return JSON.stringify([redeemed.authenticateAs, recorded.__typename, code, error.kind]);
  }
  throw new Error('a wrong key was accepted');
}
main(process.argv[2], process.argv[3]).then(console.log, (error) => {
  console.error(error);
  process.exit(1);
});
`;

beforeAll(async () => {
  consumer = await mkdtemp(join(tmpdir(), 'rt-sdk-consumer-'));
  server = await startTestServer();
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', consumer], { cwd: join(ROOT, 'sdk') });
  const [{ filename }] = JSON.parse(stdout.slice(stdout.indexOf('[')));
  await writeFile(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', `./${filename}`], { cwd: consumer });
}, 180_000);

afterAll(async () => {
  await server?.close();
  if (consumer) await rm(consumer, { recursive: true, force: true });
});

describe('the packed @request-token/sdk in an empty project', () => {
  it(`installs with its dependencies in at most ${MAX_INSTALLED_BYTES / 1024 / 1024} MB`, async () => {
    const bytes = await diskUsage(join(consumer, 'node_modules'));
    console.log(`installed @request-token/sdk with dependencies: ${(bytes / 1024 / 1024).toFixed(1)} MB on disk`);
    expect(bytes).toBeLessThanOrEqual(MAX_INSTALLED_BYTES);
    const installed = (await readdir(join(consumer, 'node_modules'))).filter((name) => !name.startsWith('.'));
    expect(installed.sort()).toEqual(['@graphql-typed-document-node', '@request-token', 'graphql', 'graphql-request']);
  });

  it('type-checks an ESM and a CommonJS consumer under strict and nodenext, and both run the story', async () => {
    await writeFile(
      join(consumer, 'esm.mts'),
      STORY(`import { createRequestTokenClient, isRequestTokenClientError, tokenise, type RejectionCode } from '@request-token/sdk';`),
    );
    await writeFile(
      join(consumer, 'cjs.cts'),
      STORY(`import sdk = require('@request-token/sdk');
const { createRequestTokenClient, isRequestTokenClientError, tokenise } = sdk;
type RejectionCode = sdk.RejectionCode;`),
    );
    await writeFile(
      join(consumer, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          // The SDK's own .d.ts files are checked too.
          skipLibCheck: false,
          types: ['node'],
          typeRoots: [join(ROOT, 'node_modules/@types')],
        },
        files: ['esm.mts', 'cjs.cts'],
      }),
    );
    const result = await run(process.execPath, [TSC, '-p', consumer], { cwd: consumer }).catch((e) => e);
    expect(`${result.stdout ?? ''}${result.stderr ?? ''}`).toBe('');

    for (const file of ['esm.mjs', 'cjs.cjs']) {
      const { stdout } = await run(process.execPath, [file, server.graphqlUrl, server.apiKey], { cwd: consumer });
      expect(JSON.parse(stdout), file).toEqual(['42', 'RecordResponseStatusSuccess', 'MAX_USES_EXCEEDED', 'unauthorized']);
    }
  }, 120_000);

  it('refuses a type error in the consumer (the check is real)', async () => {
    await writeFile(
      join(consumer, 'wrong.mts'),
      `import { createRequestTokenClient } from '@request-token/sdk';
const rt = createRequestTokenClient({ url: 'http://localhost:4000/graphql', apiKey: 'k' });
const issued = await rt.createRequestToken({ scope: 's' });
export const sent: string = issued.__typename === 'CreateRequestTokenSuccess' ? issued.url : '';
`,
    );
    const result = await run(
      process.execPath,
      [TSC, '--noEmit', '--strict', '--module', 'nodenext', '--target', 'es2022', '--types', 'node', '--typeRoots', join(ROOT, 'node_modules/@types'), 'wrong.mts'],
      { cwd: consumer },
    ).catch((e) => e);
    expect(result.stdout).toMatch(/wrong\.mts.*error TS2322: Type 'string \| null' is not assignable to type 'string'/);
  }, 120_000);

  it('exposes only its entry point: the build folders are not importable by path', async () => {
    await writeFile(join(consumer, 'deep.mjs'), `await import('@request-token/sdk/dist/esm/client.js');`);
    const result = await run(process.execPath, ['deep.mjs'], { cwd: consumer }).catch((e) => e);
    expect(result.stderr).toMatch(/ERR_PACKAGE_PATH_NOT_EXPORTED/);
  });
});
