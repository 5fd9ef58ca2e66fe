import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateApiKey } from '../server/domain/api-keys.js';
import { createTestDatabase, TEST_SECRET } from './support/harness.js';
import { freePort } from './support/ports.js';
import { clusterTempDir } from './support/temp-dir.js';
import { startService, waitForHealthy, type ServiceProcess } from './support/process.js';

const running: ServiceProcess[] = [];
const dirs: string[] = [];
afterAll(async () => {
  for (const service of running) if (service.child.exitCode === null) service.child.kill('SIGKILL');
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

/** Status and body of `{ viewer-ish }` read with `key`: 200 when the key is accepted, 401 when refused. */
async function ask(base: string, key: string, query = '{ apiKeys { id revokedAt } }', variables = {}) {
  const res = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
  });
  return { status: res.status, body: (await res.json()) as any };
}

/** Starts the service with `env`, waits until it is healthy, and returns a function that stops it with SIGTERM. */
async function run(env: Record<string, string>): Promise<{ base: string; stop(): Promise<void> }> {
  const port = await freePort();
  const service = startService({ ...env, PORT: String(port) });
  running.push(service);
  const base = `http://127.0.0.1:${port}`;
  await waitForHealthy(`${base}/healthz`, service);
  return {
    base,
    async stop() {
      service.child.kill('SIGTERM');
      expect(await service.exited).toBe(0);
    },
  };
}

describe('REQUEST_TOKEN_ADMIN_KEY across restarts (DATABASE_URL)', () => {
  it('keeps working, stays revoked once revoked, is replaced by a new value, and keys made through the API survive', async () => {
    const env = {
      DATABASE_URL: await createTestDatabase(),
      DATA_DIR: join(tmpdir(), 'rt-unused'),
      NODE_ENV: 'production',
      REQUEST_TOKEN_SECRET: TEST_SECRET,
    };
    const first = generateApiKey().key;
    const second = generateApiKey().key;

    let service = await run({ ...env, REQUEST_TOKEN_ADMIN_KEY: first });
    const made = await ask(
      service.base,
      first,
      `mutation { createApiKey(input: { name: "made through the API", permissions: [ADMIN] }) {
        ... on CreateApiKeySuccess { key apiKey { id } } } }`,
    );
    const apiKey: string = made.body.data.createApiKey.key;
    await service.stop();

    for (let restart = 0; restart < 3; restart++) {
      service = await run({ ...env, REQUEST_TOKEN_ADMIN_KEY: first });
      expect((await ask(service.base, first)).status, `restart ${restart + 1}`).toBe(200);
      expect((await ask(service.base, apiKey)).status).toBe(200);
      if (restart < 2) await service.stop();
    }

    // Revoked through the API: the next start must not bring it back.
    const firstId = first.split('_')[1];
    const revoked = await ask(service.base, apiKey, 'mutation($id: ID!) { revokeApiKey(id: $id) { __typename } }', {
      id: firstId,
    });
    expect(revoked.body.data.revokeApiKey.__typename).toBe('RevokeApiKeySuccess');
    await service.stop();
    service = await run({ ...env, REQUEST_TOKEN_ADMIN_KEY: first });
    expect((await ask(service.base, first)).status).toBe(401);
    expect((await ask(service.base, apiKey)).status).toBe(200);
    await service.stop();

    // A new value replaces the old key; the key made through the API is untouched.
    service = await run({ ...env, REQUEST_TOKEN_ADMIN_KEY: second });
    expect((await ask(service.base, second)).status).toBe(200);
    expect((await ask(service.base, first)).status).toBe(401);
    expect((await ask(service.base, apiKey)).status).toBe(200);
    await service.stop();
  }, 120_000);

  it('revokes the key of the previous value when the variable changes', async () => {
    const env = {
      DATABASE_URL: await createTestDatabase(),
      DATA_DIR: join(tmpdir(), 'rt-unused'),
      REQUEST_TOKEN_SECRET: TEST_SECRET,
    };
    const [a, b] = [generateApiKey().key, generateApiKey().key];
    let service = await run({ ...env, REQUEST_TOKEN_ADMIN_KEY: a });
    await service.stop();
    service = await run({ ...env, REQUEST_TOKEN_ADMIN_KEY: b });
    expect((await ask(service.base, a)).status).toBe(401);
    const keys = (await ask(service.base, b)).body.data.apiKeys as { id: string; revokedAt: string | null }[];
    expect(keys.find((k) => k.id === a.split('_')[1])?.revokedAt).not.toBeNull();
    expect(keys.find((k) => k.id === b.split('_')[1])?.revokedAt).toBeNull();
    await service.stop();
  }, 60_000);
});

describe('REQUEST_TOKEN_ADMIN_KEY across restarts (embedded PostgreSQL)', () => {
  it('is accepted after every restart on the same data directory', async () => {
    const root = await clusterTempDir('rt-restart-');
    dirs.push(root);
    const key = generateApiKey().key;
    const env = {
      DATA_DIR: join(root, 'data'),
      EMBEDDED_PG_PORT: String(await freePort()),
      REQUEST_TOKEN_ADMIN_KEY: key,
    };
    for (let start = 0; start < 3; start++) {
      const service = await run(env);
      expect((await ask(service.base, key)).status, `start ${start + 1}`).toBe(200);
      await service.stop();
    }
  }, 120_000);
});
