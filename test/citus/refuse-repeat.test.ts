import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import pg from 'pg';
import { createTestDatabase, startTestServer, type TestServer } from '../support/harness.js';
import { issue, redeem } from '../support/operations.js';

// The same refusal, again and again, on one token and on many: every answer is the typed refusal, never a 500.
// A delegated function's statements are prepared once per worker session (PL/pgSQL's plan cache); from the sixth run on,
// PostgreSQL may switch one to a generic plan, one without the parameters' values, when it costs no more than the
// custom ones. Citus cannot plan the refusal's verdict (`(select 1) left join request_token t on t.id = $1`) without the
// token id's value: such a plan fails with "could not create distributed plan", a 500. Whether PostgreSQL switches
// depends on costs (statistics, the shard's size), so it showed once in a while only; here the workers' database asks
// for generic plans always (plan_cache_mode = force_generic_plan), which the functions must override.
// Runs only on a Citus coordinator (`npm run test:citus`).
const citus = inject('citus');

let server: TestServer;
/** What the database answered with an error during a refusal, for the failure message. */
const errors: string[] = [];
beforeAll(async () => {
  if (!citus) return;
  const databaseUrl = await createTestDatabase();
  const name = new URL(databaseUrl).pathname.slice(1);
  // Before any session opens there: every worker session of the test database plans generically.
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  try {
    // Citus propagates the setting to the workers; the coordinator's own is then reset there only (its statements, the
    // delegated calls included, keep PostgreSQL's usual choice).
    await admin.query(`alter database "${name}" set plan_cache_mode = force_generic_plan`);
    await admin.query('set citus.enable_ddl_propagation = off');
    await admin.query(`alter database "${name}" reset plan_cache_mode`);
  } finally {
    await admin.end();
  }
  server = await startTestServer({}, {}, { databaseUrl });
  const pool = server.db.pool as pg.Pool;
  const query = pool.query.bind(pool) as (...args: unknown[]) => Promise<unknown>;
  const record = (config: unknown, error: Error) => {
    const c = config as { name?: string; text?: string } | string;
    errors.push(`${typeof c === 'string' ? c : (c.name ?? c.text)}: ${error.message}`);
  };
  // Both of pg's forms: a promise, or (the hot path's queryPrepared) a callback as the last argument.
  pool.query = ((...args: unknown[]) => {
    const callback = args.at(-1);
    if (typeof callback === 'function') {
      return query(...args.slice(0, -1), (error: Error | undefined, result: unknown) => {
        if (error) record(args[0], error);
        callback(error, result);
      });
    }
    return query(...args).catch((error: Error) => {
      record(args[0], error);
      throw error;
    });
  }) as typeof pool.query;
});
afterAll(() => server?.close());

const times = 20;

/** Refuses `jwt` `times` times as `input` says and answers the codes seen (each one, in order). */
async function refuseRepeatedly(jwt: string, input: Record<string, unknown>) {
  const codes: string[] = [];
  for (let i = 0; i < times; i++) {
    const res = await redeem(server, { jwt, ...input });
    codes.push(res.code ?? res.__typename);
  }
  return codes;
}

describe.skipIf(!citus)('on Citus, the same refusal many times', () => {
  it('answers SCOPE_MISMATCH every time on one token, and logs each', async () => {
    const { jwt, token } = await issue(server, { scope: 'repeat', maxUses: 3 });
    const codes = await refuseRepeatedly(jwt, { scope: 'elsewhere' });
    expect({ codes, errors }).toEqual({ codes: Array(times).fill('SCOPE_MISMATCH'), errors: [] });
    const rows = await server.sql(`select error_code from request_token_log where token_id = $1`, [token.id]);
    expect(rows.map((r) => r.error_code)).toEqual(Array(times).fill('SCOPE_MISMATCH'));
  });

  it('answers MAX_USES_EXCEEDED every time on one used-up token', async () => {
    const { jwt } = await issue(server, { scope: 'repeat', maxUses: 1 });
    expect((await redeem(server, { jwt, scope: 'repeat' })).__typename).toBe('Redemption');
    const codes = await refuseRepeatedly(jwt, { scope: 'repeat' });
    expect({ codes, errors }).toEqual({ codes: Array(times).fill('MAX_USES_EXCEEDED'), errors: [] });
  });

  it('answers each refusal kind every time across many tokens', async () => {
    const codes: string[] = [];
    for (let i = 0; i < times; i++) {
      const { jwt } = await issue(server, { scope: 'repeat', maxUses: 1 });
      codes.push((await redeem(server, { jwt, scope: 'elsewhere' })).code);
      expect((await redeem(server, { jwt, scope: 'repeat' })).__typename).toBe('Redemption');
      codes.push((await redeem(server, { jwt, scope: 'repeat' })).code);
    }
    expect({ codes, errors }).toEqual({
      codes: Array.from({ length: times }, () => ['SCOPE_MISMATCH', 'MAX_USES_EXCEEDED']).flat(),
      errors: [],
    });
  });

  it('answers every kind of refusal every time, as a tenant, with urls, users and keys', async () => {
    const [client] = await server.sql(`insert into api_client (name) values ('repeat-tenant') returning id`);
    const made = await server.gql(
      `mutation($c: ID!) { createApiKey(input: { name: "t", clientId: $c, permissions: [ISSUE, READ, REDEEM] }) {
        ... on CreateApiKeySuccess { key } } }`,
      { c: String(client.id) },
    );
    const key = made.data.createApiKey.key as string;
    const asTenant = async (input: Record<string, unknown>) => {
      const res = await server.gql(
        `mutation($input: RedeemRequestTokenInput!) { redeemRequestToken(input: $input) {
          __typename ... on TokenRejectedError { code } } }`,
        { input },
        key,
      );
      return res.data?.redeemRequestToken?.code ?? res.data?.redeemRequestToken?.__typename ?? JSON.stringify(res.errors);
    };
    const create = async (input: Record<string, unknown>, k: string | null = key) => {
      const res = await server.gql(
        `mutation($input: CreateRequestTokenInput!) { createRequestToken(input: $input) {
          ... on CreateRequestTokenSuccess { jwt token { id } } } }`,
        { input },
        k,
      );
      return res.data.createRequestToken as { jwt: string; token: { id: string } };
    };
    const url = 'https://app.example/a?x=1';
    const t = await create({ scope: 'r', targetUrl: url, userId: 'u1', maxUses: 1 });
    const foreign = await create({ scope: 'r' }, server.apiKey);
    const expected: string[] = [];
    const codes: string[] = [];
    const expect1 = async (code: string, input: Record<string, unknown>) => {
      expected.push(code);
      codes.push(await asTenant(input));
    };
    for (let i = 0; i < times; i++) {
      await expect1('SCOPE_MISMATCH', { jwt: t.jwt, scope: 'x', url, userId: 'u1' });
      await expect1('TARGET_URL_MISMATCH', { jwt: t.jwt, scope: 'r', url: 'https://app.example/b', userId: 'u1' });
      await expect1('AUDIENCE_MISMATCH', { jwt: t.jwt, scope: 'r', url, userId: 'u2' });
      await expect1('TOKEN_NOT_FOUND', { jwt: foreign.jwt, scope: 'r' });
      await expect1('TOKEN_MALFORMED', { jwt: 'not-a-jwt', scope: 'r' });
      await expect1('SCOPE_MISMATCH', { jwt: t.jwt, scope: 'x', url, userId: 'u1', idempotencyKey: `k${i}` });
    }
    expect((await asTenant({ jwt: t.jwt, scope: 'r', url, userId: 'u1' }))).toBe('Redemption');
    for (let i = 0; i < times; i++) {
      await expect1('MAX_USES_EXCEEDED', { jwt: t.jwt, scope: 'r', url, userId: 'u1' });
      await expect1('MAX_USES_EXCEEDED', { jwt: t.jwt, scope: 'r', url, userId: 'u1', idempotencyKey: `m${i}` });
    }
    await server.gql(`mutation($id: ID!) { revokeRequestToken(id: $id) { __typename } }`, { id: t.token.id }, key);
    for (let i = 0; i < times; i++) await expect1('TOKEN_REVOKED', { jwt: t.jwt, scope: 'r', url, userId: 'u1' });
    await server.services.refusalLog.flush();
    expect({ codes, errors }).toEqual({ codes: expected, errors: [] });
  });

  it('answers every refusal of one token sent at once', async () => {
    const { jwt } = await issue(server, { scope: 'repeat', maxUses: 1 });
    const codes: string[] = [];
    for (let round = 0; round < 5; round++) {
      const res = await Promise.all(
        Array.from({ length: times }, (_, i) => redeem(server, { jwt, scope: i % 2 ? 'elsewhere' : 'repeat' }).catch((e): Record<string, any> => ({ code: String(e) }))),
      );
      codes.push(...res.map((r) => r.code ?? r.__typename));
    }
    const counts: Record<string, number> = {};
    for (const c of codes) counts[c] = (counts[c] ?? 0) + 1;
    expect({ counts, errors }).toEqual({
      counts: { Redemption: 1, SCOPE_MISMATCH: (5 * times) / 2, MAX_USES_EXCEEDED: (5 * times) / 2 - 1 },
      errors: [],
    });
  });
});
