import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeProtectedHeader } from 'jose';
import { CREATE, REDEEM } from '../support/operations.js';
import { ROOT } from '../support/process.js';
import { startTestServer, type TestServer } from '../support/harness.js';

let server: TestServer;

/** Runs `request-token <args>` (the built command, as `npx request-token`) against the test service, as an operator would. */
function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['bin/request-token.mjs', ...args], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '/tmp',
        NODE_ENV: 'test',
        REQUEST_TOKEN_URL: server.url,
        REQUEST_TOKEN_API_KEY: server.apiKey,
      },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());

describe('command line', () => {
  it('creates a client and a scoped key that works against the server, lists and revokes it', async () => {
    const created = await cli(['clients', 'create', 'acme']);
    expect(created, created.stderr).toMatchObject({ code: 0 });
    expect(created.stdout).toMatch(/created client \d+ "acme"/);

    const made = await cli(['keys', 'create', '--client', 'acme', '--permissions', 'issue,redeem', '--name', 'acme web']);
    expect(made.code, made.stderr).toBe(0);
    const key = made.stdout.trim();
    expect(key).toMatch(/^rt_[A-Za-z0-9]+_[A-Za-z0-9_-]+$/);

    const issued = await server.gql(CREATE, { input: { scope: 's' } }, key);
    expect(issued.data.createRequestToken.__typename).toBe('CreateRequestTokenSuccess');
    expect((await server.gql('{ requestTokens { totalCount } }', {}, key)).errors?.[0].extensions?.code).toBe('FORBIDDEN');

    const listed = await cli(['keys', 'list', '--client', 'acme']);
    expect(listed.stdout).toContain('acme web');
    expect(listed.stdout).toContain('issue,redeem');
    expect(listed.stdout).not.toContain(key.split('_').slice(2).join('_'));

    // Revoked through the API, so the running server refuses it at once, even right after using (caching) it.
    const spare = (await cli(['keys', 'create', '--client', 'acme', '--permissions', 'read'])).stdout.trim();
    expect((await server.gql('{ requestTokens { totalCount } }', {}, spare)).status).toBe(200);
    const revoked = await cli(['keys', 'revoke', spare.split('_')[1]]);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect((await server.gql('{ requestTokens { totalCount } }', {}, spare)).status).toBe(401);
  });

  it('refuses bad input with a clear message and exit status 2', async () => {
    const bad = await cli(['keys', 'create', '--client', '1', '--permissions', 'issue,fly']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/unknown permission "fly"/);
    const unknown = await cli(['keys', 'create', '--client', 'nobody', '--permissions', 'issue']);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/no client "nobody"/);
  });

  it('rotates the signing key; the running server signs with it and old links keep working', async () => {
    const before = await server.gql(CREATE, { input: { scope: 's', maxUses: 3 } });
    const rotated = await cli(['signing-keys', 'rotate', '--algorithm', 'EdDSA']);
    expect(rotated.code, rotated.stderr).toBe(0);
    const kid = /active signing key is now (\S+)/.exec(rotated.stdout)![1];
    const after = await server.gql(CREATE, { input: { scope: 's' } });
    expect(decodeProtectedHeader(after.data.createRequestToken.jwt)).toMatchObject({ alg: 'EdDSA', kid });
    const old = await server.gql(REDEEM, { input: { jwt: before.data.createRequestToken.jwt, scope: 's' } });
    expect(old.data.redeemRequestToken.__typename).toBe('Redemption');
    const listed = await cli(['signing-keys', 'list']);
    expect(listed.stdout).toMatch(new RegExp(`${kid}\\s+EdDSA\\s+active`));
    expect(listed.stdout).toMatch(/default\s+HS256\s+verify/);
  });
});
