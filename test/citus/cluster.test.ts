import { join } from 'node:path';
import { tmpdir } from 'node:os';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { generateApiKey } from '../../server/domain/api-keys.js';
import { createTestDatabase, TEST_SECRET } from '../support/harness.js';
import { freePort } from '../support/ports.js';
import { startService, waitForHealthy, type ServiceProcess } from '../support/process.js';
import { addWorker, citusCluster, workerCtl } from '../support/citus.js';

// The service on a Citus cluster (a coordinator and two workers), through three service processes: contention on one
// token, tokens on every shard, a worker stopped and started under load, and a third worker added with the shards
// rebalanced while redemptions run. Runs only through `npm run test:citus`.
const citus = inject('citus');
const apiKey = generateApiKey().key;
let databaseUrl: string;
let db: pg.Pool;
const bases: string[] = [];
const services: ServiceProcess[] = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  if (!citus) return;
  databaseUrl = await createTestDatabase();
  db = new pg.Pool({ connectionString: databaseUrl, max: 3 });
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const service = startService({
      DATABASE_URL: databaseUrl,
      DATA_DIR: join(tmpdir(), 'rt-unused'),
      PORT: String(port),
      NODE_ENV: 'production',
      REQUEST_TOKEN_SECRET: TEST_SECRET,
      REQUEST_TOKEN_ADMIN_KEY: apiKey,
      DB_POOL_SIZE: '10',
      // 1,000 requests at once on two shared cores and three PostgreSQL nodes: generous limits, only outcomes count.
      DB_POOL_TIMEOUT_MS: '50000',
      DB_LOCK_TIMEOUT_MS: '50000',
      DB_STATEMENT_TIMEOUT_MS: '55000',
      MAX_CONNECTIONS_PER_CLIENT: '0',
    });
    services.push(service);
    await waitForHealthy(`http://127.0.0.1:${port}/healthz`, service, 120_000);
    bases.push(`http://127.0.0.1:${port}`);
  }
}, 300_000);

afterAll(async () => {
  for (const s of services) if (s.child.exitCode === null) s.child.kill('SIGTERM');
  await Promise.all(services.map((s) => s.exited));
  await db?.end();
});

async function gql(base: string, query: string, variables: Record<string, unknown>, timeoutMs = 90_000) {
  const res = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({ query, variables }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: res.status, body: (await res.json()) as any };
}

const ISSUE = `mutation($input: CreateRequestTokenInput!) { createRequestToken(input: $input) {
  __typename ... on CreateRequestTokenSuccess { jwt token { id } } } }`;
const REDEEM = `mutation($input: RedeemRequestTokenInput!) { redeemRequestToken(input: $input) {
  __typename ... on Redemption { id token { id } } ... on TokenRejectedError { code } } }`;

interface Token {
  id: string;
  jwt: string;
  scope: string;
}

const issue = async (scope: string, maxUses: number): Promise<Token> => {
  const { body } = await gql(bases[0], ISSUE, { input: { scope, maxUses } });
  const created = body.data.createRequestToken;
  return { id: created.token.id, jwt: created.jwt, scope };
};

/**
 * The errors the services logged as unexpected (a masked "Unexpected error." answer), each with its stack and code, so
 * a failing assertion says which failure escaped the unavailability mapping (server/database/db-errors.ts).
 */
function loggedUnexpected(): string[] {
  return services.flatMap((s, i) =>
    s
      .output()
      .split(/\n(?=\d{4}-\d\d-\d\dT)/)
      .filter((entry) => /^\S+ error (unexpected error while serving a request|the lean GraphQL path failed)/.test(entry))
      .map((entry) => `service ${i}: ${entry}`),
  );
}

/**
 * One redemption under an idempotency key, sent again under that key when no answer came (a careful client): a
 * keep-alive connection left idle since an earlier burst can be closed by the service just as it is reused (seen here
 * under load as `fetch failed`, other side closed / ECONNRESET, after one earlier response on that socket). Its one
 * answer's type.
 */
let resent = 0;
async function redeemOnce(base: string, token: Token, key: string): Promise<string | undefined> {
  for (let attempt = 1; ; attempt++) {
    try {
      const { body } = await gql(base, REDEEM, { input: { jwt: token.jwt, scope: token.scope, idempotencyKey: key } });
      return body.data?.redeemRequestToken?.__typename;
    } catch (error) {
      if (attempt === 5) throw error;
      resent++;
      await sleep(50);
    }
  }
}

/** The worker (host:port) holding each token's shard. */
async function placement(ids: string[]): Promise<Map<string, string>> {
  const { rows } = await db.query<{ id: string; node: string }>(
    `select t.id::text, s.nodename || ':' || s.nodeport as node
     from unnest($1::bigint[]) t(id)
     join citus_shards s on s.table_name = 'request_token'::regclass
       and s.shardid = get_shard_id_for_distribution_column('request_token', t.id)`,
    [ids],
  );
  return new Map(rows.map((r) => [r.id, r.node]));
}

/** Per token: its used_to_date and its success log rows, for every token of `scope`. */
async function countsByToken(scope: string) {
  const { rows } = await db.query<{ id: string; used: number; logged: number }>(
    `select t.id::text, t.used_to_date as used,
       (select count(*)::int from request_token_log l where l.token_id = t.id and l.error_code is null) as logged
     from request_token t where t.scope = $1 order by t.id`,
    [scope],
  );
  return rows;
}

interface Acked {
  key: string;
  tokenId: string;
  logId: string;
}

/**
 * Workers redeeming round-robin over `tokens` with idempotency keys, each logical redemption retried under its key on
 * every 503 until it gets an answer (a careful client). `on503` sees which token got a 503, and when.
 */
function startLoad(tokens: Token[], workers: number, on503: (token: Token) => void = () => {}) {
  const acked: Acked[] = [];
  const unexpected: string[] = [];
  let refused = 0;
  let abandoned = 0;
  let transient = 0;
  let running = true;
  let n = 0;
  const worker = async (w: number) => {
    while (running) {
      const token = tokens[n++ % tokens.length];
      const key = `w${w}-${n}`;
      const started = Date.now();
      for (;;) {
        if (Date.now() - started > 60_000) {
          abandoned++;
          break;
        }
        let answer: { status: number; body: any };
        try {
          answer = await gql(bases[n % bases.length], REDEEM, { input: { jwt: token.jwt, scope: token.scope, idempotencyKey: key } }, 30_000);
        } catch {
          // No answer (the request outlived the service's request timeout while its shard was locked, or a connection
          // was reset): a careful client retries under the same key.
          transient++;
          await sleep(50);
          continue;
        }
        const r = answer.body?.data?.redeemRequestToken;
        if (r?.__typename === 'Redemption') {
          acked.push({ key, tokenId: r.token.id, logId: r.id });
          break;
        }
        if (r?.__typename === 'TokenRejectedError') {
          refused++;
          break;
        }
        if (answer.status === 503 && answer.body?.errors?.[0]?.extensions?.code === 'SERVICE_UNAVAILABLE') {
          on503(token);
          await sleep(50);
          continue;
        }
        unexpected.push(`${answer.status} ${JSON.stringify(answer.body)}`);
        break;
      }
    }
  };
  const all = Promise.all(Array.from({ length: workers }, (_, w) => worker(w)));
  return {
    acked,
    async stop() {
      running = false;
      await all;
      return { acked, unexpected, refused, abandoned, transient };
    },
  };
}

/** Every acknowledged redemption has its success log row, and every token's count equals its success log rows. */
async function expectConsistent(scope: string, acked: Acked[]) {
  const { rows } = await db.query<{ token_id: string; id: string }>(
    `select token_id::text, id::text from request_token_log l
     where l.error_code is null and (l.token_id, l.id) in (select * from unnest($1::bigint[], $2::bigint[]))`,
    [acked.map((a) => a.tokenId), acked.map((a) => a.logId)],
  );
  expect(rows.length).toBe(new Set(acked.map((a) => `${a.tokenId}/${a.logId}`)).size);
  for (const t of await countsByToken(scope)) expect({ token: t.id, used: t.used }).toEqual({ token: t.id, used: t.logged });
}

describe.skipIf(!citus)('three service processes on a Citus cluster', () => {
  it('logs the layout it found at start-up', () => {
    for (const s of services) {
      expect(s.output()).toMatch(/citus 13\.\d.*coordinator 127\.0\.0\.1:\d+, 2 worker\(s\)/);
      expect(s.output()).toMatch(/distributed: request_token\(id, 32 shards\), request_token_idempotency\(token_id/);
      expect(s.output()).toMatch(/reference: api_client, api_key, signing_key/);
    }
  });

  it('lets exactly 5 of 1,000 concurrent redemptions of a maxUses=5 token succeed, with 1,000 log rows', { timeout: 300_000 }, async () => {
    const token = await issue('citus-contention', 5);
    const started = performance.now();
    const answers = await Promise.all(
      Array.from({ length: 1_000 }, (_, i) =>
        gql(bases[i % 3], REDEEM, { input: { jwt: token.jwt, scope: token.scope } }).then(
          (a) => a.body.data?.redeemRequestToken?.__typename ?? `HTTP ${a.status}: ${JSON.stringify(a.body.errors)}`,
        ),
      ),
    );
    const ms = Math.round(performance.now() - started);
    const tally: Record<string, number> = {};
    for (const a of answers) tally[a] = (tally[a] ?? 0) + 1;
    console.log(`citus contention: 1,000 redemptions over 3 processes in ${ms} ms: ${JSON.stringify(tally)}`);
    expect(tally).toEqual({ Redemption: 5, TokenRejectedError: 995 });
    const { rows } = await db.query(
      `select count(*)::int as all, count(*) filter (where error_code is null)::int as ok,
         (select used_to_date from request_token where id = $1) as used
       from request_token_log where token_id = $1`,
      [token.id],
    );
    expect(rows[0]).toEqual({ all: 1_000, ok: 5, used: 5 });
  });

  it('counts every use on every shard: used_to_date equals the success log rows of each token', { timeout: 300_000 }, async () => {
    const scope = 'citus-spread';
    const tokens: Token[] = [];
    // Tokens until every shard holds some (ids are hashed over 32 shards), bounded.
    for (let i = 0; i < 400; i++) {
      tokens.push(await issue(scope, 3));
      if (tokens.length >= 64 && tokens.length % 16 === 0) {
        const { rows } = await db.query(
          `select count(distinct get_shard_id_for_distribution_column('request_token', id))::int as shards
           from request_token where scope = $1`,
          [scope],
        );
        if (rows[0].shards === 32) break;
      }
    }
    const { rows: covered } = await db.query(
      `select count(distinct get_shard_id_for_distribution_column('request_token', id))::int as shards
       from request_token where scope = $1`,
      [scope],
    );
    expect(covered[0].shards).toBe(32);
    // Four attempts per token at once (three succeed, one is refused), spread over the processes.
    const answers = await Promise.all(
      tokens.flatMap((t, i) => Array.from({ length: 4 }, (_, k) => redeemOnce(bases[(i + k) % 3], t, `spread-${i}-${k}`))),
    );
    console.log(`citus spread: ${tokens.length} tokens, ${answers.length} redemptions, ${resent} sent again without an answer`);
    expect(answers.filter((a) => a === 'Redemption').length).toBe(tokens.length * 3);
    expect(answers.filter((a) => a === 'TokenRejectedError').length).toBe(tokens.length);
    const counts = await countsByToken(scope);
    expect(counts.length).toBe(tokens.length);
    for (const t of counts) expect({ token: t.id, used: t.used, logged: t.logged }).toEqual({ token: t.id, used: 3, logged: 3 });
  });

  it('answers 503 for the tokens of a stopped worker, keeps serving the others, and recovers on its own', { timeout: 300_000 }, async () => {
    const scope = 'citus-worker-down';
    const tokens: Token[] = [];
    for (let i = 0; i < 24; i++) tokens.push(await issue(scope, 1_000_000));
    const where = await placement(tokens.map((t) => t.id));
    const nodes = [...new Set(where.values())].sort();
    expect(nodes.length).toBe(2);
    const stopped = nodes[1];
    const unavailable = new Map<string, number>();
    let away = false;
    const load = startLoad(tokens, 8, (token) => {
      if (away) unavailable.set(token.id, (unavailable.get(token.id) ?? 0) + 1);
    });
    await sleep(2_000);
    const before = load.acked.length;
    away = true;
    workerCtl('stop', Number(stopped.split(':')[1]) - citusCluster().basePort);
    const stoppedAt = load.acked.length;
    await sleep(3_000);
    const duringAck = load.acked.slice(stoppedAt);
    away = false;
    workerCtl('start', Number(stopped.split(':')[1]) - citusCluster().basePort);
    const restartedAt = Date.now();
    // Recovered on its own: a token of the restarted worker redeems again, without any restart of the services.
    let recoveredMs = -1;
    while (Date.now() - restartedAt < 60_000) {
      if (load.acked.some((a, i) => i >= stoppedAt + duringAck.length && where.get(a.tokenId) === stopped)) {
        recoveredMs = Date.now() - restartedAt;
        break;
      }
      await sleep(50);
    }
    await sleep(1_000);
    const result = await load.stop();
    console.log(
      `citus worker ${stopped} down 3 s: ${result.acked.length} acknowledged (${before} before), ` +
        `${[...unavailable.values()].reduce((a, b) => a + b, 0)} answers 503 for ${unavailable.size} of its tokens, ` +
        `recovered in ${recoveredMs} ms`,
    );
    expect(result.unexpected, loggedUnexpected().join('\n')).toEqual([]);
    expect(loggedUnexpected()).toEqual([]);
    expect(result.abandoned).toBe(0);
    expect(recoveredMs).toBeGreaterThanOrEqual(0);
    // While it was away: the 503s were for its tokens only, and the other worker's tokens kept redeeming.
    expect(unavailable.size).toBeGreaterThan(0);
    for (const id of unavailable.keys()) expect(where.get(id)).toBe(stopped);
    expect(duringAck.some((a) => where.get(a.tokenId) !== stopped)).toBe(true);
    await expectConsistent(scope, result.acked);
  });

  it('adds a third worker and rebalances the shards while redemptions run: nothing lost, nothing counted twice', { timeout: 600_000 }, async () => {
    const scope = 'citus-rebalance';
    const tokens: Token[] = [];
    for (let i = 0; i < 24; i++) tokens.push(await issue(scope, 1_000_000));
    const load = startLoad(tokens, 6);
    await sleep(1_000);
    const name = new URL(databaseUrl).pathname.slice(1);
    const added = await addWorker(3, databaseUrl, [name]);
    // Without logical replication (wal_level = replica here) a move blocks writes to the shard group while it copies.
    await db.query(`select citus_rebalance_start(shard_transfer_mode => 'block_writes')`);
    const started = Date.now();
    let state = '';
    while (Date.now() - started < 300_000) {
      ({ rows: [{ state }] } = await db.query(`select state::text from citus_rebalance_status() order by job_id desc limit 1`));
      if (state === 'finished' || state === 'failed' || state === 'cancelled') break;
      await sleep(500);
    }
    await sleep(1_000);
    const result = await load.stop();
    const { rows: moved } = await db.query(
      `select count(*)::int as shards from citus_shards where table_name = 'request_token'::regclass
       and nodename || ':' || nodeport = $1`,
      [added],
    );
    console.log(
      `citus rebalance onto ${added}: ${state} in ${Date.now() - started} ms, ${moved[0].shards} request_token shards there; ` +
        `${result.acked.length} redemptions acknowledged meanwhile, ${result.transient} requests without an answer retried`,
    );
    for (const s of services) expect(s.child.exitCode).toBeNull();
    expect(state).toBe('finished');
    expect(moved[0].shards).toBeGreaterThan(0);
    expect(result.unexpected, loggedUnexpected().join('\n')).toEqual([]);
    expect(result.abandoned).toBe(0);
    expect(result.acked.length).toBeGreaterThan(0);
    // A key acknowledged twice would be a use counted twice.
    expect(new Set(result.acked.map((a) => a.key)).size).toBe(result.acked.length);
    await expectConsistent(scope, result.acked);
    // Tokens on the new worker redeem.
    const where = await placement(tokens.map((t) => t.id));
    const there = tokens.find((t) => where.get(t.id) === added);
    expect(there).toBeDefined();
    const { body } = await gql(bases[1], REDEEM, { input: { jwt: there!.jwt, scope } });
    expect(body.data.redeemRequestToken.__typename).toBe('Redemption');
  });
});
