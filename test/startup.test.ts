import { readFile, rm, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../server/config.js';
import { generateApiKey } from '../server/domain/api-keys.js';
import { createTestDatabase, TEST_SECRET } from './support/harness.js';
import { freePort } from './support/ports.js';
import { clusterTempDir } from './support/temp-dir.js';
import { startService, waitForHealthy, type ServiceProcess } from './support/process.js';

const gql = async (base: string, key: string, query: string, variables: Record<string, unknown> = {}) => {
  const res = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
  });
  return { status: res.status, body: (await res.json()) as any };
};

const ISSUE = `mutation { createRequestToken(input: { scope: "restart", maxUses: 2 }) {
  ... on CreateRequestTokenSuccess { jwt token { id } } } }`;
const REDEEM = `mutation($jwt: String!) { redeemRequestToken(input: { jwt: $jwt, scope: "restart" }) {
  __typename ... on Redemption { usesRemaining } ... on Error { code } } }`;

const portOpen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });

describe('npm start with no DATABASE_URL (embedded PostgreSQL)', () => {
  let dataDir: string;
  const running: ServiceProcess[] = [];
  beforeAll(async () => {
    dataDir = join(await clusterTempDir('rt-start-'), 'data');
  });
  afterAll(async () => {
    for (const service of running) if (service.child.exitCode === null) service.child.kill('SIGKILL');
    await rm(join(dataDir, '..'), { recursive: true, force: true });
  });

  it('starts, creates an admin key, keeps tokens across a restart and stops cleanly on SIGTERM', async () => {
    const port = await freePort();
    const pgPort = await freePort();
    const env = { DATA_DIR: dataDir, PORT: String(port), EMBEDDED_PG_PORT: String(pgPort) };
    const base = `http://127.0.0.1:${port}`;

    const first = startService(env);
    running.push(first);
    await waitForHealthy(`${base}/healthz`, first);
    const key = (await readFile(join(dataDir, 'admin-api-key'), 'utf8')).trim();
    expect(first.output()).toContain(key);
    expect((await stat(join(dataDir, 'admin-api-key'))).mode & 0o777).toBe(0o600);
    const issued = await gql(base, key, ISSUE);
    const jwt = issued.body.data.createRequestToken.jwt;
    expect((await gql(base, key, REDEEM, { jwt })).body.data.redeemRequestToken.usesRemaining).toBe(1);

    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    expect(await portOpen(pgPort)).toBe(false);
    expect(await portOpen(port)).toBe(false);

    const second = startService(env);
    running.push(second);
    await waitForHealthy(`${base}/healthz`, second);
    expect(second.output()).not.toContain(key);
    // Same key, same signing secret, same data: the link issued before the restart still has its second use.
    const again = await gql(base, key, REDEEM, { jwt });
    expect(again.body.data.redeemRequestToken).toEqual({ __typename: 'Redemption', usesRemaining: 0 });
    const third = await gql(base, key, REDEEM, { jwt });
    expect(third.body.data.redeemRequestToken).toEqual({ __typename: 'TokenRejectedError', code: 'MAX_USES_EXCEEDED' });

    second.child.kill('SIGINT');
    expect(await second.exited).toBe(0);
    expect(await portOpen(pgPort)).toBe(false);
  }, 120_000);
});

describe('npm start with DATABASE_URL', () => {
  it('uses the given database and the configured admin key', async () => {
    const databaseUrl = await createTestDatabase();
    const port = await freePort();
    const adminKey = generateApiKey().key;
    const service = startService({
      DATABASE_URL: databaseUrl,
      PORT: String(port),
      REQUEST_TOKEN_SECRET: TEST_SECRET,
      REQUEST_TOKEN_ADMIN_KEY: adminKey,
      NODE_ENV: 'production',
      DATA_DIR: join(tmpdir(), 'rt-unused'),
    });
    try {
      const base = `http://127.0.0.1:${port}`;
      await waitForHealthy(`${base}/healthz`, service);
      expect(service.output()).not.toContain('embedded');
      const issued = await gql(base, adminKey, ISSUE);
      expect(issued.body.data.createRequestToken.token.id).toBeDefined();
      service.child.kill('SIGTERM');
      expect(await service.exited).toBe(0);
    } finally {
      if (service.child.exitCode === null) service.child.kill('SIGKILL');
    }
  }, 60_000);
});

describe('configuration errors stop start-up with a message naming the variable', () => {
  it.each([
    [{ PORT: 'eighty' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ DEFAULT_MAX_USES: '0' }, 'DEFAULT_MAX_USES'],
    [{ SESSION_TOKEN_EXPIRY_MINUTES: '-3' }, 'SESSION_TOKEN_EXPIRY_MINUTES'],
    [{ REQUEST_TOKEN_SECRET: 'too-short' }, 'REQUEST_TOKEN_SECRET'],
    [{ DATABASE_URL: 'mysql://x' }, 'DATABASE_URL'],
    [{ NODE_ENV: 'staging' }, 'NODE_ENV'],
    [{ NODE_ENV: 'production', REQUEST_TOKEN_ADMIN_KEY: generateApiKey().key }, 'REQUEST_TOKEN_SECRET'],
    [{ NODE_ENV: 'production', REQUEST_TOKEN_SECRET: TEST_SECRET }, 'REQUEST_TOKEN_ADMIN_KEY'],
    [{ REQUEST_TOKEN_ADMIN_KEY: 'letmein' }, 'REQUEST_TOKEN_ADMIN_KEY'],
    [{ REDEEM_BATCH_MAX: '0' }, 'REDEEM_BATCH_MAX'],
    [{ HEAP_GROWING_PERCENT: 'half' }, 'HEAP_GROWING_PERCENT'],
  ])('%o', (env, variable) => {
    expect(() => loadConfig(env)).toThrow(new RegExp(`^${variable}: `));
  });

  it('exits with status 1 and the message, before touching any database', async () => {
    const dataDir = join(tmpdir(), `rt-never-created-${process.pid}`);
    const service = startService({ DATA_DIR: dataDir, NODE_ENV: 'production' });
    expect(await service.exited).toBe(1);
    expect(service.output()).toContain('invalid configuration: REQUEST_TOKEN_SECRET: is required when NODE_ENV=production');
    await expect(stat(dataDir)).rejects.toThrow();
  });
});

describe('known start-up failures print one line that says what to do', () => {
  it('names an unreachable DATABASE_URL without a stack trace', async () => {
    const closed = await freePort();
    const service = startService({
      DATABASE_URL: `postgres://nobody:nothing@127.0.0.1:${closed}/none`,
      PORT: String(await freePort()),
      DATA_DIR: join(tmpdir(), 'rt-unused'),
    });
    expect(await service.exited).toBe(1);
    expect(service.output()).not.toMatch(/^\s+at /m);
    expect(service.output().trim().split('\n').at(-1)).toBe(
      'request-token: cannot connect to the database in DATABASE_URL (connection refused): is PostgreSQL running there?',
    );
  });

  it('names credentials the database refused', async () => {
    const url = new URL(await createTestDatabase());
    url.password = 'not-the-password';
    const service = startService({ DATABASE_URL: url.toString(), PORT: String(await freePort()), DATA_DIR: join(tmpdir(), 'rt-unused') });
    expect(await service.exited).toBe(1);
    expect(service.output().trim().split('\n').at(-1)).toBe(
      'request-token: the database in DATABASE_URL refused the user or password: check the credentials in DATABASE_URL',
    );
  });
});
