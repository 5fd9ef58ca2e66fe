/**
 * The SDK as a consumer gets it: `npm run build` output resolved by package name through package.json "exports".
 * A temporary consumer project links the package into its node_modules, type-checks a file that imports only
 * 'request-token/sdk', and runs built JavaScript against the real service.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/harness.js';
import { ROOT } from '../support/process.js';

const run = promisify(execFile);
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');

let consumer: string;
let server: TestServer;

beforeAll(async () => {
  // The same command as `npm run build`.
  await run(process.execPath, [TSC, '-p', join(ROOT, 'tsconfig.build.json')], { cwd: ROOT });
  consumer = await mkdtemp(join(tmpdir(), 'rt-sdk-consumer-'));
  await mkdir(join(consumer, 'node_modules'));
  await symlink(ROOT, join(consumer, 'node_modules', 'request-token'), 'dir');
  await writeFile(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  server = await startTestServer();
}, 120_000);

afterAll(async () => {
  await server?.close();
  if (consumer) await rm(consumer, { recursive: true, force: true });
});

describe("import { createRequestTokenClient } from 'request-token/sdk'", () => {
  it('type-checks in a consumer project through the package exports', async () => {
    await writeFile(
      join(consumer, 'consumer.ts'),
      `import { createRequestTokenClient, requestToken, withRequestToken, isRequestTokenClientError, tokenise } from 'request-token/sdk';
import type { Redemption, LoginMode, RequestTokenClientError } from 'request-token/sdk';

const rt = createRequestTokenClient({ url: 'http://localhost:4000/graphql', apiKey: 'rt_1_secret' });
export async function send(targetUrl: string): Promise<string | null> {
  const issued = await rt.createRequestToken({ scope: 'unsubscribe', userId: '42', targetUrl, loginMode: 'REQUEST' });
  if (issued.__typename === 'CreateRequestTokenSuccess') return issued.url;
  const issues: { path: string[]; message: string }[] = issued.issues;
  return issues.length ? null : null;
}
export const mode: LoginMode = 'SESSION';
export const guard = requestToken({ client: rt, scope: 'unsubscribe', required: true });
export const handler = withRequestToken((_req, { redemption }) => {
  const r: Redemption = redemption;
  return new Response(r.id);
}, { client: rt, scope: 'unsubscribe', required: true });
export const link: string = tokenise('https://a.example/u', 'j');
export function kind(e: unknown): RequestTokenClientError['kind'] | null {
  return isRequestTokenClientError(e) ? e.kind : null;
}
// The middleware types req.requestToken on node:http requests (and so on Express's).
export const tokenId = (req: import('node:http').IncomingMessage): string | undefined => req.requestToken?.token.id;
// @ts-expect-error scope is required
void rt.createRequestToken({ userId: '42' });
`,
    );
    await writeFile(
      join(consumer, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noEmit: true,
          skipLibCheck: false,
          types: ['node'],
          typeRoots: [join(ROOT, 'node_modules/@types')],
        },
        files: ['consumer.ts'],
      }),
    );
    const result = await run(process.execPath, [TSC, '-p', consumer], { cwd: consumer }).catch((e) => e);
    expect(`${result.stdout ?? ''}${result.stderr ?? ''}`).toBe('');
    // skipLibCheck is off so the SDK's own .d.ts files are checked too: slow on a busy machine.
  }, 120_000);

  it('exposes only the SDK: the service code is not importable through the package', async () => {
    await writeFile(join(consumer, 'deep.mjs'), `await import('request-token/server/config.js');`);
    const result = await run(process.execPath, ['deep.mjs'], { cwd: consumer }).catch((e) => e);
    expect(result.stderr).toMatch(/ERR_PACKAGE_PATH_NOT_EXPORTED/);
  });

  it('runs the built JavaScript against the real service', async () => {
    await writeFile(
      join(consumer, 'run.mjs'),
      `import { createRequestTokenClient } from 'request-token/sdk';
const rt = createRequestTokenClient({ url: process.argv[2], apiKey: process.argv[3] });
const issued = await rt.createRequestToken({ scope: 'built', maxUses: 1 });
const redeemed = await rt.redeemRequestToken({ jwt: issued.jwt, scope: 'built' });
const again = await rt.redeemRequestToken({ jwt: issued.jwt, scope: 'built' });
console.log(JSON.stringify([issued.__typename, redeemed.__typename, again.code]));
`,
    );
    const { stdout } = await run(process.execPath, ['run.mjs', server.graphqlUrl, server.apiKey], { cwd: consumer });
    expect(JSON.parse(stdout)).toEqual(['CreateRequestTokenSuccess', 'Redemption', 'MAX_USES_EXCEEDED']);
  });
});
