// `npm run bench:scale`: the service on a large database. Seeds (COPY) tokens and log rows of two tenants over the
// last days into a freshly migrated database, then measures through the GraphQL API of the service as `npm start` runs
// it: usage statistics, log and token listings (first and 1,000th page), redemption throughput against a small
// database in the same run, retention of the oldest month, and the log's size. See BENCHMARKS.md, "Scale".
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kind, parse, print, visit, type DefinitionNode, type FragmentDefinitionNode } from 'graphql';
import { SignJWT } from 'jose';
import pg from 'pg';
import { startEmbeddedDatabase, type EmbeddedDatabase } from '../server/database/embedded-db.js';
import { initDatabase } from '../server/database/db.js';
import { generateApiKey, hashApiKeySecret } from '../server/domain/api-keys.js';
import { ensureLogPartitions } from '../server/domain/log-partitions.js';
import { encodeCursor } from '../server/domain/paging.js';
import { rebuildRollups } from '../server/domain/usage-rollups.js';
import { bundle } from '../scripts/build-service.js';
import { clusterTempDir } from '../test/support/temp-dir.js';
import { freePort } from '../test/support/ports.js';
import { pageBoundary } from './scale-pages.js';
import { seed, TENANTS, userName, type SeedSize, type Tenant } from './scale-seed.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const env = process.env;
const num = (name: string, fallback: number) => (env[name] ? Number(env[name]) : fallback);
const size: SeedSize = {
  tokens: num('BENCH_SCALE_TOKENS', 1_000_000),
  logs: num('BENCH_SCALE_LOGS', 10_000_000),
  days: num('BENCH_SCALE_DAYS', 60),
};
const settings = {
  ...size,
  /** Timed requests per query (after 3 untimed), within BENCH_SCALE_QUERY_SECONDS per query. */
  samples: num('BENCH_SCALE_SAMPLES', 100),
  querySeconds: num('BENCH_SCALE_QUERY_SECONDS', 20),
  // The redemption runs take bench/run.ts's settings (and knobs), so the two benchmarks' redeem figures compare.
  seconds: num('BENCH_SECONDS', 6),
  warmupSeconds: num('BENCH_WARMUP_SECONDS', 2),
  rounds: num('BENCH_ROUNDS', 3),
  connections: num('BENCH_CONNECTIONS', 32),
  poolSize: num('BENCH_DB_POOL_SIZE', 10),
};
const log = (line: string) => process.stderr.write(`bench:scale: ${line}\n`);

// ---------------------------------------------------------------------------------------------------------------------
// The SDK's documents (sdk/operations), each with the fragments it uses.

const sdkDefinitions: DefinitionNode[] = [];
for (const file of ['viewer', 'fragments', 'request-token-logs', 'request-tokens', 'usage-stats', 'redeem-request-token', 'truncate-request-token-logs']) {
  sdkDefinitions.push(...parse(readFileSync(join(ROOT, 'sdk/operations', `${file}.graphql`), 'utf8')).definitions);
}
function sdkDocument(operation: string): string {
  const fragments = new Map(
    sdkDefinitions.filter((d): d is FragmentDefinitionNode => d.kind === Kind.FRAGMENT_DEFINITION).map((d) => [d.name.value, d]),
  );
  const op = sdkDefinitions.find((d) => d.kind === Kind.OPERATION_DEFINITION && d.name?.value === operation);
  if (!op) throw new Error(`no SDK operation ${operation}`);
  const used = new Set<string>();
  const walk = (node: DefinitionNode) =>
    visit(node, {
      FragmentSpread(spread) {
        if (!used.has(spread.name.value)) {
          used.add(spread.name.value);
          walk(fragments.get(spread.name.value)!);
        }
      },
    });
  walk(op);
  return [op, ...[...used].map((name) => fragments.get(name)!)].map((d) => print(d)).join('\n\n');
}
/** A document without its connection's totalCount: a page as an infinite list asks for it (no count of the filter). */
const withoutTotal = (doc: string) =>
  print(visit(parse(doc), { Field: (field) => (field.name.value === 'totalCount' ? null : undefined) }));
const DOCS = {
  logs: sdkDocument('RequestTokenLogs'),
  logsPage: withoutTotal(sdkDocument('RequestTokenLogs')),
  tokens: sdkDocument('RequestTokens'),
  tokensPage: withoutTotal(sdkDocument('RequestTokens')),
  stats: sdkDocument('UsageStats'),
  viewer: sdkDocument('Viewer'),
  redeem: sdkDocument('RedeemRequestToken'),
  truncate: sdkDocument('TruncateRequestTokenLogs'),
};

// ---------------------------------------------------------------------------------------------------------------------
// Processes.

const node = (args: string[], childEnv: Record<string, string>) =>
  spawn(process.execPath, args[0].endsWith('.mjs') ? args : ['--import', 'tsx', ...args], {
    cwd: ROOT,
    env: { PATH: env.PATH ?? '', HOME: env.HOME ?? '/tmp', ...childEnv },
    stdio: ['ignore', 'pipe', 'inherit'],
  });

async function waitFor(check: () => Promise<boolean>, what: string, child: ChildProcess, ms = 120_000) {
  const started = Date.now();
  while (Date.now() - started < ms) {
    if (child.exitCode !== null) throw new Error(`${what} exited early`);
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} not ready after ${ms} ms`);
}

async function gql(url: string, key: string, query: string, variables: unknown): Promise<any> {
  const res = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as any;
  if (res.status !== 200 || body.errors) throw new Error(`HTTP ${res.status}: ${JSON.stringify(body).slice(0, 500)}`);
  return body.data;
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * p) - 1)];

interface Timing {
  samples: number;
  p50: number;
  p99: number;
}

/** Times one request, one at a time: 3 untimed, then up to `samples` within the time budget (at least 5). */
async function timeRequest(run: () => Promise<unknown>): Promise<Timing> {
  for (let i = 0; i < 3; i++) await run();
  const times: number[] = [];
  const deadline = performance.now() + settings.querySeconds * 1000;
  while (times.length < settings.samples && (times.length < 5 || performance.now() < deadline)) {
    const started = performance.now();
    await run();
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  return { samples: times.length, p50: percentile(times, 0.5), p99: percentile(times, 0.99) };
}

// ---------------------------------------------------------------------------------------------------------------------
// Databases.

interface Database {
  url: string;
  name: string;
}

async function createDatabase(serverUrl: string, name: string): Promise<Database> {
  const root = new pg.Client({ connectionString: serverUrl });
  await root.connect();
  await root.query(`create database ${name}`);
  await root.end();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return { url: url.toString(), name };
}

async function migrate(url: string) {
  const db = await initDatabase(url, { dbPoolSize: 2, dbPoolTimeoutMs: 30_000, dbStatementTimeoutMs: 600_000, dbLockTimeoutMs: 60_000 });
  await db.close();
}

/** The tenants' clients and one key each (issue, redeem, read), as `request-token clients create` would store them. */
async function createTenants(db: pg.ClientBase): Promise<(Tenant & { key: string })[]> {
  const tenants: (Tenant & { key: string })[] = [];
  for (const tenant of TENANTS) {
    const { rows } = await db.query('insert into api_client (name) values ($1) returning id::text', [tenant.name]);
    const { id, secret, key } = generateApiKey();
    await db.query(
      `insert into api_key (id, name, secret_hash, permissions, client_id) values ($1, $2, $3, $4, $5)`,
      [id, `${tenant.name} dashboard`, hashApiKeySecret(secret), ['issue', 'redeem', 'read'], rows[0].id],
    );
    tenants.push({ ...tenant, clientId: rows[0].id, key });
  }
  return tenants;
}

/** The redemption scenario's tokens (as bench/run.ts seeds them), in the first tenant: 20,000, max_uses 10⁹. */
async function redemptionTokens(db: pg.ClientBase, clientId: string, secret: string): Promise<string[]> {
  const { rows } = await db.query(
    `insert into request_token (scope, max_uses, client_id)
     select 'bench', 1000000000, $1 from generate_series(1, 20000) returning id::text, issued_at`,
    [clientId],
  );
  const key = new TextEncoder().encode(secret);
  return Promise.all(
    rows.map((r) =>
      new SignJWT({ jti: r.id, sub: 'bench', mod: 'n', max: 1000000000, iat: Math.floor(r.issued_at.getTime() / 1000) })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .sign(key),
    ),
  );
}

/**
 * Secondary indexes of `tables` (those that back no constraint): dropped before the COPY and built again after from
 * their own definitions, so the schema ends as migrated. A partitioned table's index is built on every partition.
 */
async function secondaryIndexes(db: pg.ClientBase, tables: string[]): Promise<{ name: string; def: string }[]> {
  const { rows } = await db.query(
    `select i.indexrelid::regclass::text as name, pg_get_indexdef(i.indexrelid) as def
     from pg_index i join pg_class c on c.oid = i.indrelid
     where c.relname = any($1) and c.relnamespace = 'public'::regnamespace
       and not exists (select 1 from pg_constraint k where k.conindid = i.indexrelid)`,
    [tables],
  );
  return rows.map((r) => ({ name: r.name, def: r.def.replace(' ON ONLY ', ' ON ') }));
}

/** The log's total size: every partition (a plain table has no partition tree), its indexes and TOAST. */
const LOG_SIZE_SQL = `select coalesce(
    (select sum(pg_total_relation_size(relid)) from pg_partition_tree('request_token_log'::regclass)),
    pg_total_relation_size('request_token_log'::regclass))::bigint as bytes`;

// ---------------------------------------------------------------------------------------------------------------------

interface Figure {
  name: string;
  value: string;
  target: string;
  met: boolean | null;
  detail?: string;
}

async function main() {
  const dir = await clusterTempDir('rt-bench-scale-');
  let embedded: EmbeddedDatabase | null = null;
  const children: ChildProcess[] = [];
  const clients: pg.Client[] = [];
  const figures: Figure[] = [];
  const json: Record<string, unknown> = { settings };
  try {
    await bundle('server/main.ts', join(ROOT, 'dist/server.mjs'));
    let serverUrl = env.DATABASE_URL;
    let superuserUrl: string | null = null;
    if (!serverUrl) {
      log('starting an embedded PostgreSQL');
      embedded = await startEmbeddedDatabase({
        dir: join(dir, 'pg'),
        port: env.BENCH_PG_PORT ? Number(env.BENCH_PG_PORT) : await freePort(),
        persistent: false,
        serviceRoleCreatesDatabases: true,
      });
      serverUrl = embedded.url;
      superuserUrl = embedded.superuserUrl;
    }
    const suffix = randomBytes(4).toString('hex');
    const large = await createDatabase(serverUrl, `rt_scale_large_${suffix}`);
    const small = await createDatabase(serverUrl, `rt_scale_small_${suffix}`);
    const connect = async (url: string) => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      clients.push(client);
      return client;
    };
    const pgVersion = (await (await connect(large.url)).query('show server_version')).rows[0].server_version;
    for (const db of [large, small]) await migrate(db.url);

    // Seeding the large database.
    const seeded = performance.now();
    // The superuser (embedded) may skip foreign-key triggers while copying rows that satisfy them by construction.
    const asSeeder = superuserUrl ? new URL(superuserUrl) : new URL(large.url);
    asSeeder.pathname = `/${large.name}`;
    const seeder = await connect(asSeeder.toString());
    const tenants = await createTenants(seeder);
    const { rows: nullable } = await seeder.query(
      `select not attnotnull as nullable from pg_attribute where attrelid = 'request_token_log'::regclass and attname = 'token_id'`,
    );
    const now = Date.now();
    // The log's months from the oldest seeded row's (the service keeps only the coming ones ahead), created by the
    // service's role as the service creates them: their owner, who may drop them (retention).
    const asService = await connect(large.url);
    await ensureLogPartitions(asService, { from: new Date(now - size.days * 86_400_000), to: new Date(now) });
    const indexes = await secondaryIndexes(seeder, ['request_token', 'request_token_log']);
    await seeder.query(`set maintenance_work_mem = '512MB'`);
    await seeder.query('set session_replication_role = replica').catch(() => log('not a superuser: foreign keys checked row by row'));
    for (const index of indexes) await seeder.query(`drop index ${index.name}`);
    const copied = await seed(seeder, { size, now, tenants, noToken: nullable[0].nullable ? null : '0', log });
    let started = performance.now();
    for (const index of indexes) await seeder.query(index.def);
    const indexSeconds = (performance.now() - started) / 1000;
    log(`${indexes.length} secondary indexes built in ${indexSeconds.toFixed(1)} s`);
    await seeder.query('set session_replication_role = default').catch(() => {});
    for (const [table, column] of [['request_token', 'id'], ['request_token_log', 'id']]) {
      await seeder.query(`select setval(pg_get_serial_sequence($1, $2), (select max(${column}) from ${table}))`, [table, column]);
    }
    started = performance.now();
    await seeder.query('vacuum (analyze) request_token, request_token_log');
    const vacuumSeconds = (performance.now() - started) / 1000;
    // The hourly rollups of the seeded history, as `request-token rollups rebuild` builds them after an import.
    started = performance.now();
    const rollupPool = new pg.Pool({ connectionString: large.url, max: 2 });
    const rolled = await rebuildRollups(rollupPool, {}).finally(() => rollupPool.end());
    await seeder.query('analyze');
    const rollupSeconds = (performance.now() - started) / 1000;
    log(`rollups: ${rolled.minutes} minutes rolled up, ${rolled.rebuilt} rebuilt in ${rollupSeconds.toFixed(1)} s`);
    const seedSeconds = (performance.now() - seeded) / 1000;
    log(`seeded in ${seedSeconds.toFixed(1)} s (VACUUM ANALYZE ${vacuumSeconds.toFixed(1)} s)`);
    json.seed = { ...copied, indexSeconds, vacuumSeconds, rollupSeconds, seedSeconds };

    const { rows: sized } = await seeder.query(LOG_SIZE_SQL);
    const logBytes = Number(sized[0].bytes);

    // The redemption scenario's tokens, on both databases.
    const secret = randomBytes(32).toString('base64url');
    const adminKey = generateApiKey().key;
    const smallDb = await connect(small.url);
    const smallTenants = await createTenants(smallDb);
    const jwts = { large: await redemptionTokens(seeder, tenants[0].clientId, secret), small: [] as string[] };
    jwts.small = await redemptionTokens(smallDb, smallTenants[0].clientId, secret);
    await seeder.query('analyze request_token');
    await smallDb.query('analyze');

    // The services, as `npm start` runs them.
    const services: Record<'large' | 'small', { url: string; pid: number }> = {} as never;
    for (const [name, db] of [['large', large], ['small', small]] as const) {
      const port = env.BENCH_PORT ? Number(env.BENCH_PORT) + (name === 'large' ? 0 : 1) : await freePort();
      const child = node(['dist/server.mjs'], {
        DATABASE_URL: db.url,
        REQUEST_TOKEN_SECRET: secret,
        REQUEST_TOKEN_ADMIN_KEY: adminKey,
        DB_POOL_SIZE: String(settings.poolSize),
        PORT: String(port),
        HOST: '127.0.0.1',
        NODE_ENV: 'production',
        LOG_LEVEL: 'error',
        DATA_DIR: join(dir, `data-${name}`),
      });
      children.push(child);
      const url = `http://127.0.0.1:${port}`;
      await waitFor(async () => (await fetch(`${url}/healthz`)).status === 200, `the service (${name})`, child);
      services[name] = { url, pid: child.pid! };
    }
    const loadBefore = loadavg();

    // Queries, one at a time, as the first tenant's dashboard asks them.
    const api = services.large.url;
    const key = tenants[0].key;
    const until = new Date(now);
    const since = new Date(now - 30 * 86_400_000);
    // A query that fails (a statement timeout, say) is a figure too: the run goes on.
    const query = async (name: string, target: number, p99Target: number | null, doc: string, variables: any, check: (data: any) => boolean) => {
      let t: Timing;
      try {
        const first = await gql(api, key, doc, variables);
        if (!check(first)) throw new Error(`unexpected answer ${JSON.stringify(first).slice(0, 300)}`);
        t = await timeRequest(() => gql(api, key, doc, variables));
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        log(`${name}: failed: ${message}`);
        figures.push({ name, value: 'failed', target: `p50 ≤ ${target} ms`, met: false, detail: message.slice(0, 200).replace(/\|/g, '/') });
        json[name] = { error: message };
        return;
      }
      log(`${name}: p50 ${t.p50.toFixed(1)} ms, p99 ${t.p99.toFixed(1)} ms (${t.samples} requests)`);
      figures.push({ name: `${name}: p50`, value: `${t.p50.toFixed(1)} ms`, target: `≤ ${target} ms`, met: t.p50 <= target, detail: `${t.samples} requests` });
      if (p99Target !== null) {
        figures.push({ name: `${name}: p99`, value: `${t.p99.toFixed(1)} ms`, target: `≤ ${p99Target} ms`, met: t.p99 <= p99Target, detail: `${t.samples} requests` });
      }
      json[name] = t;
    };

    // What any authenticated request costs on this machine at this moment (one small query): the floor under the rest.
    {
      const t = await timeRequest(() => gql(api, key, DOCS.viewer, {}));
      log(`reference, viewer: p50 ${t.p50.toFixed(1)} ms, p99 ${t.p99.toFixed(1)} ms`);
      figures.push({ name: 'reference: viewer (the smallest authenticated query)', value: `p50 ${t.p50.toFixed(1)} ms, p99 ${t.p99.toFixed(1)} ms`, target: '(reference)', met: null, detail: `${t.samples} requests` });
      json.viewer = t;
    }
    const heavyScope = TENANTS[0].scopes[0][0];
    const statsFilter = { since: since.toISOString(), until: until.toISOString() };
    await query('usageStats, 30 days by day', 50, 200, DOCS.stats, { filter: statsFilter, bucket: 'DAY' },
      (d) => d.usageStats.buckets.length >= 30 && d.usageStats.totals.redemptions > 0);
    await query(`usageStats, 30 days by day, scope ${heavyScope}`, 50, 200, DOCS.stats, { filter: { ...statsFilter, scope: heavyScope }, bucket: 'DAY' },
      (d) => d.usageStats.totals.redemptions > 0);

    // Log listings: the first page, and the 1,000th (20 a page) through the cursor that ends the 999th page. The cursor
    // is the id of the filter's 19,980th row (newest first), read in SQL and encoded as the service encodes cursors;
    // the answer is checked to start with the filter's 19,981st row, so a wrong cursor fails the run.
    const logFilters: [string, Record<string, unknown>, string][] = [
      ['no filter', {}, 'true'],
      [`scope ${heavyScope}`, { scope: heavyScope }, `token_id in (select id from request_token where client_id = $1 and scope = '${heavyScope}')`],
      ['failed', { failed: true }, 'error_code is not null'],
      ['userId', { userId: userName(0, 0) }, `user_id = '${userName(0, 0)}'`],
    ];
    // Each listing twice: the SDK's document (with totalCount, the filter's count) and the same without totalCount.
    const documents: [string, string, string][] = [
      ['SDK document', DOCS.logs, DOCS.tokens],
      ['without totalCount', DOCS.logsPage, DOCS.tokensPage],
    ];
    for (const [label, filter, where] of logFilters) {
      const boundary = await pageBoundary(seeder, tenants[0].clientId, where, 19_980);
      for (const [docLabel, doc] of documents) {
        await query(`requestTokenLogs first page, ${label}, ${docLabel}`, 10, null, doc, { filter, first: 20 },
          (d) => d.requestTokenLogs.edges.length === 20);
        if (label === 'userId') continue;
        if (!boundary) {
          log(`requestTokenLogs 1,000th page, ${label}: fewer than 20,000 rows, skipped`);
          continue;
        }
        await query(`requestTokenLogs 1,000th page, ${label}, ${docLabel}`, 10, null, doc, { filter, first: 20, after: encodeCursor(boundary.cursorId) },
          (d) => d.requestTokenLogs.edges.length === 20 && d.requestTokenLogs.edges[0].node.id === boundary.nextId);
      }
    }
    for (const [docLabel, , doc] of documents) {
      await query(`requestTokens first page, scope ${heavyScope}, ${docLabel}`, 10, null, doc, { filter: { scope: heavyScope }, first: 20 },
        (d) => d.requestTokens.edges.length === 20);
      await query(`requestTokens first page, userId, ${docLabel}`, 10, null, doc, { filter: { userId: userName(0, 0) }, first: 20 },
        (d) => d.requestTokens.edges.length > 0);
    }

    // Redemption throughput, large against small, alternating (bench/run.ts's redeem scenario and load generator).
    const redeemRates: Record<'large' | 'small', number[]> = { large: [], small: [] };
    const redeemP99: Record<'large' | 'small', number[]> = { large: [], small: [] };
    const visitor = { clientIp: '198.51.100.23', userAgent: 'Mozilla/5.0 (X11; Linux x86_64) bench' };
    const redeem = async (name: 'large' | 'small', seconds: number) => {
      const jobFile = join(dir, `job-${name}.json`);
      const bodies = jwts[name].map((jwt) => JSON.stringify({ query: DOCS.redeem, variables: { input: { jwt, scope: 'bench', ...visitor } } }));
      const headers = { authorization: `Bearer ${name === 'large' ? tenants[0].key : smallTenants[0].key}` };
      await writeFile(jobFile, JSON.stringify({ url: services[name].url, path: '/graphql', headers, bodies, connections: settings.connections, seconds }));
      const child = node(['bench/load.ts', jobFile], {});
      let out = '';
      child.stdout!.on('data', (c) => (out += c));
      const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      if (code !== 0) throw new Error(`load generator failed (${name})`);
      return JSON.parse(out.trim().split('\n').pop()!);
    };
    for (const name of ['large', 'small'] as const) {
      const data = await gql(services[name].url, name === 'large' ? tenants[0].key : smallTenants[0].key, DOCS.redeem, {
        input: { jwt: jwts[name][0], scope: 'bench', ...visitor },
      });
      if (data.redeemRequestToken.__typename !== 'Redemption') throw new Error(`redeem (${name}): ${JSON.stringify(data)}`);
      if (settings.warmupSeconds > 0) await redeem(name, settings.warmupSeconds);
    }
    for (let round = 0; round < settings.rounds; round++) {
      for (const name of round % 2 ? (['small', 'large'] as const) : (['large', 'small'] as const)) {
        const r = await redeem(name, settings.seconds);
        if (r.non2xx || r.errors || r.timeouts) throw new Error(`redeem (${name}): non-2xx ${r.non2xx}, errors ${r.errors}, timeouts ${r.timeouts}`);
        redeemRates[name].push(r.rps);
        redeemP99[name].push(r.p99);
        log(`redeem round ${round + 1} ${name}: ${Math.round(r.rps)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms`);
      }
    }
    const median = (xs: number[]) => {
      const s = [...xs].sort((a, b) => a - b);
      return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    };
    const ratio = median(redeemRates.large) / median(redeemRates.small);
    figures.push({
      name: 'redemption throughput, large / small database',
      value: `${ratio.toFixed(2)} × (${Math.round(median(redeemRates.large))} / ${Math.round(median(redeemRates.small))} req/s)`,
      target: '≥ 0.9 ×',
      met: ratio >= 0.9,
      detail: `p99 ${median(redeemP99.large)} / ${median(redeemP99.small)} ms; medians of ${settings.rounds} rounds`,
    });
    json.redeem = { rates: redeemRates, p99: redeemP99, ratio };

    // Size, before retention.
    const perMillion = logBytes / (size.logs / 1e6);
    figures.push({
      name: 'log size per million rows',
      value: `${(perMillion / 1024 / 1024).toFixed(0)} MB`,
      target: '(measured)',
      met: null,
      detail: `${(logBytes / 1024 / 1024).toFixed(0)} MB for ${size.logs} rows, partitions, indexes and TOAST`,
    });
    json.logBytes = logBytes;

    // Retention of the oldest month: maxDays reaching the first day of the month after the oldest row's, so the
    // oldest month goes whole (plus the hours of the next one up to the same time of day: from none at midnight to a
    // whole day's just before it). Then the same with one day less: exactly 24 hours cut through inside that month,
    // what a daily retention does every day and the longest cut-through the first step can have (near midnight).
    const oldest = new Date(now - size.days * 86_400_000);
    const nextMonth = Date.UTC(oldest.getUTCFullYear(), oldest.getUTCMonth() + 1, 1);
    const maxDays = Math.max(1, Math.floor((now - nextMonth) / 86_400_000));
    const retain = async (label: string, days: number, key: string) => {
      const { rows: before } = await seeder.query('select count(*)::int as n from request_token_log');
      const started = performance.now();
      const name = `${label} (truncateRequestTokenLogs maxDays ${days})`;
      try {
        const truncated = await gql(api, adminKey, DOCS.truncate, { maxDays: days });
        const ms = performance.now() - started;
        const result = truncated.truncateRequestTokenLogs;
        if (result.__typename !== 'TruncateRequestTokenLogsSuccess') throw new Error(`retention: ${JSON.stringify(result)}`);
        // The answer comes once the rows are out of the log; a month dropped whole has its files removed after it, by
        // the service (TruncateOptions.dropInBackground): how long that took, from the call's start, is reported too,
        // and waited for, so that the next step does not overlap it.
        let dropMs: number | null = null;
        const retired = `select count(*)::int as n from pg_class where relname like 'request_token_log\\_y%\\_retired'`;
        for (let i = 0; i < 3000; i++) {
          if ((await seeder.query(retired)).rows[0].n === 0) {
            dropMs = performance.now() - started;
            break;
          }
          await new Promise((r) => setTimeout(r, 10));
        }
        const { rows: after } = await seeder.query('select count(*)::int as n from request_token_log');
        log(`${label}: ${(ms / 1000).toFixed(2)} s, ${result.deletedCount} rows, no month left to drop by ${dropMs === null ? '(still there after 30 s)' : `${(dropMs / 1000).toFixed(2)} s`}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
        figures.push({
          name,
          value: `${(ms / 1000).toFixed(2)} s`,
          target: '≤ 1 s',
          met: ms <= 1000,
          detail:
            `${result.deletedCount} rows deleted (${before[0].n} → ${after[0].n}), ${result.oldestDeleted} … ${result.newestDeleted}` +
            `; no detached month left to drop (files removed in the background) by ${dropMs === null ? 'never (30 s)' : `${(dropMs / 1000).toFixed(2)} s`}`,
        });
        json[key] = { ms, dropMs, maxDays: days, ...result };
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        log(`${label} failed after ${((performance.now() - started) / 1000).toFixed(1)} s: ${message}`);
        figures.push({ name, value: 'failed', target: '≤ 1 s', met: false, detail: message.slice(0, 200).replace(/\|/g, '/') });
      }
    };
    await retain('retention of the oldest month', maxDays, 'retention');
    if (maxDays > 1) await retain('retention of one more day, 24 hours cut through inside a month', maxDays - 1, 'retentionDay');
    const loadAfter = loadavg();

    const lines: string[] = [];
    lines.push(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${Math.round(totalmem() / 1024 ** 3)} GB RAM, Node ${process.version}, PostgreSQL ${pgVersion}; load average before ${loadBefore.map((l) => l.toFixed(2)).join(' ')}, after ${loadAfter.map((l) => l.toFixed(2)).join(' ')}`);
    lines.push(`data: ${size.tokens} tokens, ${size.logs} log rows over ${size.days} days, two tenants (${TENANTS.map((t) => `${t.name} ${Math.round(t.share * 100)} %`).join(', ')}); queries as ${TENANTS[0].name}`);
    lines.push(`seeding: ${seedSeconds.toFixed(0)} s (tokens ${copied.tokensSeconds.toFixed(0)} s, log ${copied.logsSeconds.toFixed(0)} s, indexes ${indexSeconds.toFixed(0)} s, VACUUM ANALYZE ${vacuumSeconds.toFixed(0)} s, rollups ${rollupSeconds.toFixed(0)} s)`);
    lines.push(`redemption: ${settings.connections} connections, ${settings.seconds} s, ${settings.rounds} rounds, DB pool ${settings.poolSize}`);
    lines.push('');
    lines.push('| figure | measured | target | verdict | notes |');
    lines.push('|---|---|---|---|---|');
    for (const f of figures) lines.push(`| ${f.name} | ${f.value} | ${f.target} | ${f.met === null ? '—' : f.met ? 'met' : '**NOT met**'} | ${f.detail ?? ''} |`);
    process.stdout.write(`${lines.join('\n')}\n`);
    json.figures = figures;
    json.machine = { cpus: cpus().length, model: cpus()[0]?.model, node: process.version, postgres: pgVersion, loadBefore, loadAfter };
    if (env.BENCH_JSON) await writeFile(env.BENCH_JSON, JSON.stringify(json, null, 2));
    if (env.BENCH_SCALE_KEEP) {
      // To look into a figure (EXPLAIN) on the seeded database before everything is removed.
      log(`keeping the databases until SIGINT: large ${asSeeder}, small ${small.url}`);
      await new Promise((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      // A second signal (tsx relays the one sent to it, `pkill -f` sends one to each) must not kill this process
      // before the cleanup below has stopped the embedded PostgreSQL: with no listener left, Node would exit at once.
      for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => log(`${signal}: stopping already`));
    }
  } finally {
    for (const client of clients) await client.end().catch(() => {});
    for (const child of children) {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => {
          child.once('exit', r);
          setTimeout(r, 15_000).unref();
        });
      }
    }
    await embedded?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((error) => {
  process.stderr.write(`bench:scale: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
