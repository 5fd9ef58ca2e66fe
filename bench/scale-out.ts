/**
 * Several service processes on one PostgreSQL: throughput of redemptions spread round-robin over them, and a check
 * that every counted use has its success log row. Figures go to docs/scaling.md.
 *
 *   npx tsx bench/scale-out.ts [processes=1,3] [requests=6000] [concurrency=48]
 *
 * Starts its own embedded PostgreSQL (BENCH_PG_PORT, default 55141) in a temporary folder, and the services on
 * BENCH_PORT, BENCH_PORT+1, … (default 4141).
 */
import { rm } from 'node:fs/promises';
import { clusterTempDir } from '../test/support/temp-dir.js';
import { join } from 'node:path';
import pg from 'pg';
import { startEmbeddedDatabase } from '../server/database/embedded-db.js';
import { generateApiKey } from '../server/domain/api-keys.js';
import { startService, waitForHealthy, type ServiceProcess } from '../test/support/process.js';

const counts = (process.argv[2] ?? '1,3').split(',').map(Number);
const requests = Number(process.argv[3] ?? 6000);
const concurrency = Number(process.argv[4] ?? 48);
const pgPort = Number(process.env.BENCH_PG_PORT ?? 55141);
const firstPort = Number(process.env.BENCH_PORT ?? 4141);
const secret = 'bench-secret-bench-secret-bench-secret-0123456789';

const REDEEM = `mutation($input: RedeemRequestTokenInput!) { redeemRequestToken(input: $input) {
  __typename ... on Redemption { id } ... on Error { code } } }`;
const ISSUE = `mutation($input: CreateRequestTokenInput!) { createRequestToken(input: $input) {
  ... on CreateRequestTokenSuccess { jwt } } }`;

async function gql(base: string, key: string, query: string, variables: unknown) {
  const res = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
  });
  return (await res.json()) as any;
}

async function run(bases: string[], key: string, jwts: string[], total: number) {
  const latencies: number[] = [];
  let next = 0;
  let ok = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const i = next++;
        const t = performance.now();
        const body = await gql(bases[i % bases.length], key, REDEEM, { input: { jwt: jwts[i % jwts.length], scope: 'bench' } });
        latencies.push(performance.now() - t);
        if (body.data?.redeemRequestToken.__typename === 'Redemption') ok++;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))].toFixed(1);
  return { rps: Math.round(total / seconds), ok, p50: pct(0.5), p99: pct(0.99) };
}

const dir = await clusterTempDir('rel-bench-');
const db = await startEmbeddedDatabase({ dir: join(dir, 'pg'), port: pgPort, persistent: false, serviceRoleCreatesDatabases: true });
const services: ServiceProcess[] = [];
try {
  for (const count of counts) {
    const name = `bench_${count}`;
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    await admin.query(`create database ${name}`);
    await admin.end();
    const url = db.url.replace(/\/request_token$/, `/${name}`);
    const key = generateApiKey().key;
    const bases: string[] = [];
    for (let p = 0; p < count; p++) {
      const port = firstPort + p;
      const service = startService({
        DATABASE_URL: url,
        PORT: String(port),
        NODE_ENV: 'production',
        REQUEST_TOKEN_SECRET: secret,
        REQUEST_TOKEN_ADMIN_KEY: key,
        DATA_DIR: join(dir, 'unused'),
        LOG_LEVEL: 'error',
      });
      services.push(service);
      await waitForHealthy(`http://127.0.0.1:${port}/healthz`, service);
      bases.push(`http://127.0.0.1:${port}`);
    }
    const jwts: string[] = [];
    for (let t = 0; t < 50; t++) {
      jwts.push((await gql(bases[0], key, ISSUE, { input: { scope: 'bench', maxUses: 1_000_000 } })).data.createRequestToken.jwt);
    }
    await run(bases, key, jwts, Math.min(1_000, requests)); // warm-up
    const result = await run(bases, key, jwts, requests);
    const check = new pg.Client({ connectionString: url });
    await check.connect();
    const { rows } = await check.query(`select (select sum(used_to_date)::int from request_token) as used,
      (select count(*)::int from request_token_log where error_code is null) as logged`);
    await check.end();
    console.log(
      `${count} process(es), ${requests} redemptions, ${concurrency} concurrent: ${result.rps} req/s, ` +
        `p50 ${result.p50} ms, p99 ${result.p99} ms; ${result.ok} ok; used_to_date sum ${rows[0].used}, success log rows ${rows[0].logged}`,
    );
    for (const s of services.splice(0)) {
      s.child.kill('SIGTERM');
      await s.exited;
    }
  }
} finally {
  for (const s of services) s.child.kill('SIGKILL');
  await db.stop();
  await rm(dir, { recursive: true, force: true });
}
