import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { buildSchema } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey } from '../../server/domain/clients.js';
import { startTestServer, type TestServer } from '../support/harness.js';
import { ROOT } from '../support/process.js';
import { tenantKey } from '../security/support.js';
import { operations, type Operation, type Pools } from './arbitraries.js';

/**
 * The fuzzer: operations generated from the printed schema, every query and mutation with hostile variables, sent over
 * real HTTP with an admin key and with tenant keys of different permissions. `FUZZ_OPERATIONS` sets how many (a quick
 * run in `npm test`, 10,000 in `npm run test:fuzz`); `FUZZ_SEED` replays a run (fast-check prints the seed and path
 * of a failure).
 */
const OPERATIONS = Number(process.env.FUZZ_OPERATIONS ?? 300);
const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : Date.now() ^ (Math.random() * 0x7fffffff);

/** FUZZ_COLLECT=1: keep going after a failure and list every distinct one at the end (for triage, never in CI). */
const COLLECT = process.env.FUZZ_COLLECT === '1';
const found = new Map<string, string>();

interface Caller {
  name: string;
  key: string;
  /** Markers of data this caller must never see (another tenant's). */
  forbidden: string[];
}

let server: TestServer;
/** How answers ended, to see that the operations reach the resolvers, not only validation. */
const outcomes = new Map<string, number>();
let callers: Caller[];
let pools: Pools;
const schema = buildSchema(readFileSync(`${ROOT}/schema/schema.graphql`, 'utf8'));

beforeAll(async () => {
  server = await startTestServer();
  const markers = { a: `zqa${randomBytes(6).toString('hex')}`, b: `zqb${randomBytes(6).toString('hex')}` };
  const a = await tenantKey(server, `fuzz tenant ${markers.a}`, ['issue', 'redeem', 'read']);
  const b = await tenantKey(server, `fuzz tenant ${markers.b}`, ['issue', 'redeem', 'read']);
  const keyOf = async (clientId: string, permissions: string[]) =>
    (await createKey({ orm: server.db.orm, tenant: null }, { name: `fuzz ${permissions}`, clientId, permissions }))
      .key;

  const ids: string[] = [a.client.id, b.client.id, '1', '2'];
  const jwts: string[] = [];
  for (const [tenant, key, marker] of [
    ['a', a.key, markers.a],
    ['b', b.key, markers.b],
  ] as const) {
    for (const loginMode of ['NONE', 'REQUEST'] as const) {
      const res = await server.gql(
        `mutation($input: CreateRequestTokenInput!) { createRequestToken(input: $input) {
          ... on CreateRequestTokenSuccess { jwt token { id } } } }`,
        { input: { scope: 's', loginMode, maxUses: 50, userId: `user-${marker}`, data: { secret: marker, tenant } } },
        key,
      );
      const { jwt, token } = res.data.createRequestToken;
      jwts.push(jwt);
      ids.push(token.id);
      const redeemed = await server.gql(
        `mutation($input: RedeemRequestTokenInput!) { redeemRequestToken(input: $input) {
          __typename ... on Redemption { id } } }`,
        { input: { jwt, scope: 's' } },
        key,
      );
      ids.push(redeemed.data.redeemRequestToken.id);
    }
  }
  pools = { ids, jwts, strings: ['s', 'scope', 'https://ok.example/page', 'user-1', 'default'] };
  callers = [
    { name: 'admin', key: server.apiKey, forbidden: [] },
    { name: 'tenant A: issue, redeem, read', key: a.key, forbidden: [markers.b] },
    { name: 'tenant A: read', key: await keyOf(a.client.id, ['read']), forbidden: [markers.b] },
    { name: 'tenant A: issue', key: await keyOf(a.client.id, ['issue']), forbidden: [markers.b] },
    { name: 'tenant A: redeem', key: await keyOf(a.client.id, ['redeem']), forbidden: [markers.b] },
    { name: 'tenant B: issue, redeem, read', key: b.key, forbidden: [markers.a] },
  ];
}, 120_000);
afterAll(() => server?.close());

const usesConsumed = async () =>
  (await server.sql<{ used: number }>('select coalesce(sum(used_to_date), 0)::int as used from request_token'))[0].used;

/** What every answer must be: no 500, no masked bug, nothing of another tenant, no use consumed without a success. */
async function send(operation: Operation, caller: Caller, accept: string): Promise<void> {
  const before = await usesConsumed();
  const res = await fetch(server.graphqlUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept, authorization: `Bearer ${caller.key}` },
    body: JSON.stringify({ query: operation.query, variables: operation.variables }),
  });
  const text = await res.text();
  const outcome = `${res.status} ${text.includes('"data":{') ? 'executed' : 'refused'}`;
  outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
  const context =
    `${caller.name} sent ${operation.query.slice(0, 400)} with ${JSON.stringify(operation.variables).slice(0, 400)}, ` +
    `got HTTP ${res.status}: ${text.slice(0, 600)}`;
  if (res.status === 503) {
    // Deliberate: the pool or the database is busy, and the answer says to retry.
    expect(JSON.parse(text).errors.every((e: any) => e.extensions?.code === 'SERVICE_UNAVAILABLE'), context).toBe(true);
  } else {
    expect(res.status, context).toBeLessThan(500);
  }
  expect(text, context).not.toContain('INTERNAL_SERVER_ERROR');
  expect(text, context).not.toContain('Unexpected error.');
  for (const marker of caller.forbidden) expect(text, `another tenant's data: ${context}`).not.toContain(marker);
  // Uses go up only with a successful redemption in the answer (down is fine: recordResponseStatus releases them).
  const consumed = (await usesConsumed()) - before;
  const redemptions = text.split('"__typename":"Redemption"').length - 1;
  expect(consumed, `a use consumed without a successful redemption: ${context}`).toBeLessThanOrEqual(redemptions);
}

describe('the fuzzer', () => {
  it(`answers ${OPERATIONS} generated operations without a 500, a leak or a use consumed by a refusal`, async () => {
    let sent = 0;
    try {
      await fc.assert(
        fc.asyncProperty(
          operations(schema, pools),
          // The admin and the broadest keys more often, so that most operations get past the permission check.
          fc.constantFrom(...callers, callers[0], callers[0], callers[1], callers[1], callers[5]),
          fc.constantFrom('application/json', 'application/graphql-response+json', '*/*'),
          async (operation, caller, accept) => {
            sent++;
            if (!COLLECT) return send(operation, caller, accept);
            await send(operation, caller, accept).catch((error) => {
              const key = `${operation.field}: ${String(error.message).replace(/with \{.*?, got/, 'got').slice(0, 300)}`;
              if (!found.has(key)) found.set(key, String(error.message).slice(0, 1500));
            });
          },
        ),
        { seed: SEED, numRuns: OPERATIONS, endOnFailure: process.env.FUZZ_SHRINK !== '1' },
      );
    } catch (error) {
      throw new Error(`fuzzer failed (replay with FUZZ_SEED=${SEED}, FUZZ_SHRINK=1 to shrink):\n${(error as Error).message}`, {
        cause: error,
      });
    }
    if (COLLECT) console.log([...found.values()].join('\n\n'));
    console.log(`fuzzer: ${sent} operations, seed ${SEED}: ${[...outcomes].map(([k, n]) => `${k} ${n}`).join(', ')}`);
    expect(sent).toBeGreaterThanOrEqual(OPERATIONS);
    // Most operations must get past validation, or the fuzzer only tests the parser.
    const executed = [...outcomes].filter(([k]) => k.endsWith('executed')).reduce((n, [, c]) => n + c, 0);
    expect(executed).toBeGreaterThan(sent / 4);
  }, Math.max(60_000, OPERATIONS * 100));
});
