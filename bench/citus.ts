/**
 * Redeem and issue throughput of one service process on a Citus cluster (a coordinator and two workers) against the
 * same on one plain PostgreSQL 15, in the same run on the same machine, and the time of each hot statement alone from
 * a client beside the database (the statement on plain PostgreSQL, the delegated call through the coordinator).
 *
 *   npm run bench:citus [-- requests=4000 concurrency=32 order=plain-first|citus-first]
 *
 * scripts/bench-citus.sh starts both servers (from ../shared/citus) and passes their URLs (BENCH_PLAIN_URL,
 * BENCH_CITUS_URL); the service listens on BENCH_PORT (default 4151).
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { tmpdir, loadavg } from 'node:os';
import pg from 'pg';
import { generateApiKey } from '../server/domain/api-keys.js';
import { startCitus } from '../server/domain/citus.js';
import { REDEEM_SQL, REFUSE_SQL } from '../server/domain/redeem.js';
import { ISSUE_SQL } from '../server/domain/tokens.js';
import { startService, waitForHealthy } from '../test/support/process.js';
import { prepareCitusDatabase } from '../test/support/citus.js';

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.split('=') as [string, string]));
const requests = Number(args.requests ?? 4000);
const concurrency = Number(args.concurrency ?? 32);
const port = Number(process.env.BENCH_PORT ?? 4151);
const secret = 'bench-secret-bench-secret-bench-secret-0123456789';
const plainFirst = (args.order ?? 'plain-first') === 'plain-first';
const pair: [string, string | undefined][] = [
  ['plain PostgreSQL 15', process.env.BENCH_PLAIN_URL],
  ['Citus, 2 workers', process.env.BENCH_CITUS_URL],
];
// order=citus-first runs the cluster first: on a shared machine, compare runs of both orders.
const targets = Object.fromEntries(plainFirst ? pair : pair.reverse());

const REDEEM = `mutation($input: RedeemRequestTokenInput!) { redeemRequestToken(input: $input) {
  __typename ... on Redemption { id } ... on Error { code } } }`;
const ISSUE = `mutation($input: CreateRequestTokenInput!) { createRequestToken(input: $input) {
  __typename ... on CreateRequestTokenSuccess { jwt } } }`;

async function gql(base: string, key: string, query: string, variables: unknown) {
  const res = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
  });
  return (await res.json()) as any;
}

/** `total` operations, `concurrency` in flight; each `op(i)` says whether it succeeded. */
async function measure(total: number, op: (i: number) => Promise<boolean>) {
  const latencies: number[] = [];
  let next = 0;
  let ok = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const i = next++;
        const t = performance.now();
        if (await op(i)) ok++;
        latencies.push(performance.now() - t);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))].toFixed(1);
  return { rps: Math.round(total / seconds), ok, p50: pct(0.5), p99: pct(0.99) };
}

async function createDatabase(serverUrl: string, citus: boolean): Promise<string> {
  const name = `rt_bench_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  if (citus) await prepareCitusDatabase(serverUrl, name);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/**
 * Median time (ms) of one hot statement as the service sends it, from a client on the same machine: one connection,
 * back to back, `n` runs. On Citus the pool sends the delegated call (server/domain/citus.ts), so the time includes the
 * coordinator's hop to the worker (and, for issue, the id drawn first). EXPLAIN ANALYZE cannot time a delegated call:
 * the worker would run the function's statements as nested distributed queries, which Citus refuses.
 */
async function statementMs(db: pg.Pool, statement: { name: string; text: string }, values: () => unknown[], n = 300) {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await db.query({ name: statement.name, text: statement.text, values: values() });
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(n / 2)];
}

const lines: string[] = [];
const say = (line: string) => {
  console.log(line);
  lines.push(line);
};
say(`bench:citus: ${requests} requests per scenario, ${concurrency} in flight, one service process; load average before: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);

for (const [label, serverUrl] of Object.entries(targets)) {
  if (!serverUrl) throw new Error('BENCH_PLAIN_URL and BENCH_CITUS_URL must be set (scripts/bench-citus.sh sets them)');
  const citus = label.startsWith('Citus');
  const databaseUrl = await createDatabase(serverUrl, citus);
  const apiKey = generateApiKey().key;
  const service = startService({
    DATABASE_URL: databaseUrl,
    DATA_DIR: join(tmpdir(), 'rt-unused'),
    PORT: String(port),
    NODE_ENV: 'production',
    REQUEST_TOKEN_SECRET: secret,
    REQUEST_TOKEN_ADMIN_KEY: apiKey,
    DB_POOL_SIZE: '16',
    MAX_CONNECTIONS_PER_CLIENT: '0',
    RATE_LIMIT_PER_MINUTE: '0',
  });
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitForHealthy(`${base}/healthz`, service, 120_000);
    const issueOp = async () => (await gql(base, apiKey, ISSUE, { input: { scope: 'bench', maxUses: 1_000_000 } })).data
      ?.createRequestToken?.__typename === 'CreateRequestTokenSuccess';
    await measure(500, issueOp); // warm-up
    const issued = await measure(requests, issueOp);
    // 200 tokens for the redemptions (spread over every shard on Citus).
    const jwts: string[] = [];
    for (let i = 0; i < 200; i++) jwts.push((await gql(base, apiKey, ISSUE, { input: { scope: 'redeem', maxUses: 1_000_000 } })).data.createRequestToken.jwt);
    const redeemOp = async (i: number) =>
      (await gql(base, apiKey, REDEEM, { input: { jwt: jwts[i % jwts.length], scope: 'redeem' } })).data?.redeemRequestToken
        ?.__typename === 'Redemption';
    await measure(500, redeemOp);
    const redeemed = await measure(requests, redeemOp);
    say(`${label}: issue ${issued.rps}/s (p50 ${issued.p50} ms, p99 ${issued.p99} ms, ${issued.ok} ok); redeem ${redeemed.rps}/s (p50 ${redeemed.p50} ms, p99 ${redeemed.p99} ms, ${redeemed.ok} ok)`);

    // The statements' own cost, from the database's side, on a token of the run.
    const db = new pg.Pool({ connectionString: databaseUrl, max: 1 });
    const [{ id }] = (await db.query(`select id from request_token where scope = 'redeem' limit 1`)).rows;
    const redeemValues = () => REDEEM_SQL.values({ tokenId: id, scope: 'redeem', host: null, path: null, params: {}, userId: null,
      tenant: null, kid: 'default', clientIp: null, userAgent: null, tolerance: 0, key: null, fingerprint: null } as never);
    const refuseValues = () => REFUSE_SQL.values({ tokenId: id, scope: 'wrong', host: null, path: null, params: {}, userId: null,
      tenant: null, kid: 'default', clientIp: null, userAgent: null, tolerance: 0 } as never);
    const issueValues = () => ISSUE_SQL.values({ scope: 'explain', targetUrl: null, host: null, path: null, params: null, userId: null,
      loginMode: 'NONE', data: null, maxUses: 1, notBefore: null, expiresAt: null, sessionMinutes: 60, clientId: '1', kid: 'default', tolerance: 0 } as never);
    if (citus) await startCitus(db, () => {});
    const cost = {
      redeem: await statementMs(db, REDEEM_SQL, redeemValues),
      refuse: await statementMs(db, REFUSE_SQL, refuseValues),
      issue: await statementMs(db, ISSUE_SQL, issueValues),
    };
    say(`${label}: one statement from a client on the same machine, median of 300: redeem ${cost.redeem.toFixed(3)} ms, refuse ${cost.refuse.toFixed(3)} ms, issue ${cost.issue.toFixed(3)} ms`);
    await db.end();
  } finally {
    service.child.kill('SIGTERM');
    await service.exited;
  }
}
say(`load average after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
