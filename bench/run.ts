// `npm run bench`: every scenario against the service and against a hand-written baseline (bench/baseline.ts), in one
// run and one process tree, on one PostgreSQL. The load generator runs in a child process of its own with the same
// settings for both sides; sides alternate within each round, figures are medians over rounds and each ratio is the
// median of the rounds' ratios. See BENCHMARKS.md.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { clusterTempDir } from '../test/support/temp-dir.js';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SignJWT } from 'jose';
import pg from 'pg';
import { startEmbeddedDatabase, type EmbeddedDatabase } from '../server/database/embedded-db.js';
import { generateApiKey } from '../server/domain/api-keys.js';
import { ensureLogPartitions } from '../server/domain/log-partitions.js';
import { rebuildRollups } from '../server/domain/usage-rollups.js';
import { bundle, bundleCli } from '../scripts/build-service.js';
import { freePort } from '../test/support/ports.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const env = process.env;
const num = (name: string, fallback: number) => (env[name] ? Number(env[name]) : fallback);
const settings = {
  seconds: num('BENCH_SECONDS', 4),
  warmupSeconds: num('BENCH_WARMUP_SECONDS', 2),
  rounds: num('BENCH_ROUNDS', 5),
  connections: num('BENCH_CONNECTIONS', 32),
  poolSize: num('BENCH_DB_POOL_SIZE', 10),
  bulk: num('BENCH_BULK', 100_000),
  bulkRounds: num('BENCH_BULK_ROUNDS', 1),
  scenarios: (env.BENCH_SCENARIOS ?? 'redeem,redeem-low,redeem-low-text,refuse,refuse-bare,issue,read,stats,bulk').split(','),
};
/** Extra Node flags for the service and the baseline, e.g. BENCH_SERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof". */
const serverNodeArgs = (env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
const log = (line: string) => process.stderr.write(`bench: ${line}\n`);
// The targets every scenario is held to (issue 14), against the baseline of the same run.
const THROUGHPUT_FLOOR = 1.0;
const P99_CEILING = 1.5;
const RSS_CEILING = 250 * 1024 * 1024;

// The service runs as `npm start` runs it, from its bundle (scripts/build-service.ts); the baseline is bundled the
// same way, so neither side carries the TypeScript loader. The load generator and the bulk baseline run through tsx.
const BUNDLES: Record<string, string> = { 'server/main.ts': 'dist/server.mjs', 'bench/baseline.ts': 'dist/bench-baseline.mjs' };
const node = (args: string[], childEnv: Record<string, string>, stdio: any = ['ignore', 'pipe', 'inherit']) =>
  spawn(
    process.execPath,
    BUNDLES[args[0]] ? [...serverNodeArgs, BUNDLES[args[0]], ...args.slice(1)] : ['--import', 'tsx', ...args],
    {
      cwd: ROOT,
      env: { PATH: env.PATH ?? '', HOME: env.HOME ?? '/tmp', ...childEnv },
      stdio,
    },
  );

async function waitFor(check: () => Promise<boolean>, what: string, child: ChildProcess, ms = 60_000) {
  const started = Date.now();
  while (Date.now() - started < ms) {
    if (child.exitCode !== null) throw new Error(`${what} exited early`);
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} not ready after ${ms} ms`);
}

/** Resident set size in bytes, now and (since the last reset) at its peak. */
async function memory(pid: number): Promise<{ rss: number; hwm: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}
/** CPU time (user + system) the process has used, in milliseconds. */
async function cpuMs(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1].split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}
/** The PostgreSQL cluster's processes (postmaster and its children) and their CPU time, when the cluster is embedded. */
let postmasterPidFile: string | null = null;
async function clusterCpu(): Promise<Map<number, number>> {
  const cpu = new Map<number, number>();
  if (!postmasterPidFile) return cpu;
  const postmaster = Number((await readFile(postmasterPidFile, 'utf8')).split('\n')[0]);
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.split(') ')[1].split(' ');
      if (Number(entry) === postmaster || Number(fields[1]) === postmaster) {
        cpu.set(Number(entry), ((Number(fields[11]) + Number(fields[12])) * 1000) / 100);
      }
    } catch {
      // gone meanwhile
    }
  }
  return cpu;
}
/** CPU milliseconds the cluster used between two readings (a process that exited meanwhile is not counted). */
const clusterCpuSince = (before: Map<number, number>, after: Map<number, number>) =>
  [...after].reduce((sum, [pid, ms]) => sum + ms - (before.get(pid) ?? 0), 0);
const resetPeak = (pid: number) => writeFile(`/proc/${pid}/clear_refs`, '5').catch(() => {});

interface Side {
  name: 'ours' | 'baseline';
  url: string;
  pid: number;
}
interface Scenario {
  name: string;
  /** Connections of the load generator, if not the settings' (e.g. 1: latency at low load). */
  connections?: number;
  /**
   * Runs per side in each round, each of `seconds / repeats` (so a round takes as long), with the sides' order
   * alternating: every run pair gives one ratio, and the scenario's ratio is the median of all of them. At one
   * connection a pair's ratio moves by about ±10 % (BENCHMARKS.md, "Method"), as much as what is measured.
   */
  repeats?: number;
  /**
   * Per side: path and request bodies, and the body that registers a persisted query's text (sent once, in place of
   * the last body, before the runs: what the SDK sends when the service does not know the hash yet).
   */
  requests(side: Side): { path: string; bodies: string[]; register?: string };
  /** Checks one answer, so that a benchmark of errors cannot pass for a result. */
  check(side: Side, body: any): boolean;
  /** Per side: whether the checked request must leave a log row that no token owns (token id 0). */
  logsUnowned?(side: Side): boolean;
  /** Printed for comparison, without a verdict: why it is not held to the targets. */
  informational?: string;
}
interface Run {
  rps: number;
  /** Latency percentiles of the answered (2xx) requests, in milliseconds to the microsecond (bench/load.ts). */
  p50: number;
  p99: number;
  peakRss: number;
  /** Server CPU per request, in microseconds: less sensitive to a busy machine than throughput. */
  cpuPerRequest: number;
  /** PostgreSQL's CPU per request (every process of an embedded cluster, whichever side caused it), in microseconds. */
  dbCpuPerRequest: number;
  /** The load generator's CPU per request, in microseconds. */
  loadCpuPerRequest: number;
  non2xx: number;
  errors: number;
  timeouts: number;
}

async function load(side: Side, scenario: Scenario, seconds: number, headers: Record<string, string>, dir: string) {
  const { path, bodies } = scenario.requests(side);
  const jobFile = join(dir, `job-${side.name}-${scenario.name}.json`);
  await writeFile(jobFile, JSON.stringify({ url: side.url, path, headers, bodies, connections: scenario.connections ?? settings.connections, seconds }));
  await resetPeak(side.pid);
  const cpuBefore = await cpuMs(side.pid);
  const dbBefore = await clusterCpu();
  let sampled = 0;
  const sampler = setInterval(() => {
    void memory(side.pid).then((m) => (sampled = Math.max(sampled, m.rss)), () => {});
  }, 100);
  const child = node(['bench/load.ts', jobFile], {});
  let out = '';
  child.stdout!.on('data', (c) => (out += c));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  clearInterval(sampler);
  if (code !== 0) throw new Error(`load generator failed for ${side.name} ${scenario.name}`);
  const result = JSON.parse(out.trim().split('\n').pop()!);
  const { hwm } = await memory(side.pid);
  const cpuPerRequest = ((await cpuMs(side.pid)) - cpuBefore) * 1000 / Math.max(result.total, 1);
  const dbCpuPerRequest = (clusterCpuSince(dbBefore, await clusterCpu()) * 1000) / Math.max(result.total, 1);
  const loadCpuPerRequest = ((result.cpuMs ?? 0) * 1000) / Math.max(result.total, 1);
  return { ...result, peakRss: Math.max(sampled, hwm), cpuPerRequest, dbCpuPerRequest, loadCpuPerRequest } as Run;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
/** Milliseconds, to two decimals (the load generator measures to the microsecond). */
const ms = (value: number) => value.toFixed(2);
const mb = (bytes: number) => `${Math.round(bytes / 1024 / 1024)} MB`;

async function main() {
  const dir = await clusterTempDir('rt-bench-');
  let embedded: EmbeddedDatabase | null = null;
  const children: ChildProcess[] = [];
  const admin = { client: null as pg.Client | null };
  try {
    for (const [entry, outfile] of Object.entries(BUNDLES)) await bundle(entry, join(ROOT, outfile));
    // The bulk scenario runs the `request-token` command, which runs from its bundle (dist/cli): a fresh clone has none.
    if (settings.scenarios.includes('bulk')) await bundleCli();
    let serverUrl = env.DATABASE_URL;
    if (!serverUrl) {
      log('starting an embedded PostgreSQL');
      embedded = await startEmbeddedDatabase({ dir: join(dir, 'pg'), port: await freePort(), persistent: false, serviceRoleCreatesDatabases: true });
      serverUrl = embedded.url;
      postmasterPidFile = join(dir, 'pg', 'postmaster.pid');
    }
    const dbName = `rt_bench_${randomBytes(4).toString('hex')}`;
    const root = new pg.Client({ connectionString: serverUrl });
    await root.connect();
    await root.query(`create database ${dbName}`);
    const pgVersion = (await root.query('show server_version')).rows[0].server_version;
    await root.end();
    const dbUrl = new URL(serverUrl);
    dbUrl.pathname = `/${dbName}`;
    const databaseUrl = dbUrl.toString();

    const secret = randomBytes(32).toString('base64url');
    const apiKey = generateApiKey().key;
    const common = {
      DATABASE_URL: databaseUrl,
      REQUEST_TOKEN_SECRET: secret,
      REQUEST_TOKEN_ADMIN_KEY: apiKey,
      DB_POOL_SIZE: String(settings.poolSize),
    };

    const oursPort = await freePort();
    const ours = node(['server/main.ts'], {
      ...common,
      PORT: String(oursPort),
      HOST: '127.0.0.1',
      NODE_ENV: 'production',
      LOG_LEVEL: 'error',
      DATA_DIR: join(dir, 'data'),
      // To compare the service's own modes: GRAPHQL_FAST_PATH=prepared|jit|on|off npm run bench.
      ...(env.GRAPHQL_FAST_PATH ? { GRAPHQL_FAST_PATH: env.GRAPHQL_FAST_PATH } : {}),
      // E.g. 600000 to keep refusal log rows out of the measured window (to see what writing them costs).
      ...(env.REFUSAL_LOG_FLUSH_MS ? { REFUSAL_LOG_FLUSH_MS: env.REFUSAL_LOG_FLUSH_MS } : {}),
      // With REFUSAL_LOG_FLUSH_MS, REFUSAL_LOG_FLUSH_ROWS=0 (rows are otherwise written once 1,000 wait).
      ...(env.REFUSAL_LOG_FLUSH_ROWS ? { REFUSAL_LOG_FLUSH_ROWS: env.REFUSAL_LOG_FLUSH_ROWS } : {}),
      // REDEEM_BATCH_MAX=1 compares with micro-batching off.
      ...(env.REDEEM_BATCH_MAX ? { REDEEM_BATCH_MAX: env.REDEEM_BATCH_MAX } : {}),
      // ISSUE_BATCH_MAX=1 compares with batched issuance off.
      ...(env.ISSUE_BATCH_MAX ? { ISSUE_BATCH_MAX: env.ISSUE_BATCH_MAX } : {}),
      // HEAP_GROWING_PERCENT=0 compares with V8's own heap policy.
      ...(env.HEAP_GROWING_PERCENT ? { HEAP_GROWING_PERCENT: env.HEAP_GROWING_PERCENT } : {}),
    });
    children.push(ours);
    const oursUrl = `http://127.0.0.1:${oursPort}`;
    await waitFor(async () => (await fetch(`${oursUrl}/healthz`)).status === 200, 'the service', ours);

    const basePort = await freePort();
    const baseline = node(['bench/baseline.ts'], { ...common, PORT: String(basePort) });
    children.push(baseline);
    let baselineReady = false;
    baseline.stdout!.on('data', (c) => (baselineReady ||= String(c).includes('ready')));
    await waitFor(async () => baselineReady, 'the baseline', baseline);
    const sides: Side[] = [
      { name: 'ours', url: oursUrl, pid: ours.pid! },
      { name: 'baseline', url: `http://127.0.0.1:${basePort}`, pid: baseline.pid! },
    ];

    log('seeding tokens and logs');
    admin.client = new pg.Client({ connectionString: databaseUrl });
    const db = admin.client;
    await db.connect();
    const { rows: seeded } = await db.query(
      // The default client (1), where an admin key's tokens go; no kid: signed with the default key, no kid header.
      `insert into request_token (scope, max_uses, client_id)
       select 'bench', 1000000000, 1 from generate_series(1, 20000) returning id::text, issued_at`,
    );
    const key = new TextEncoder().encode(secret);
    const sign = (id: string, iat: Date, k = key) =>
      new SignJWT({ jti: id, sub: 'bench', mod: 'n', max: 1000000000, iat: Math.floor(iat.getTime() / 1000) })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .sign(k);
    const jwts = await Promise.all(seeded.map((r) => sign(r.id, r.issued_at)));
    const wrongKey = new TextEncoder().encode(randomBytes(32).toString('hex'));
    const forged = await Promise.all(seeded.slice(0, 1000).map((r) => sign(r.id, r.issued_at, wrongKey)));
    const readIds = seeded.slice(0, 100).map((r) => r.id);
    await db.query(
      `insert into request_token_log (token_id, user_id, client_ip, user_agent, status_code, client_id)
       select t, 'u' || n, '203.0.113.' || (n % 250), 'Mozilla/5.0 (bench)', 200, 1
       from unnest($1::bigint[]) as t, generate_series(1, 30) as n`,
      [readIds],
    );
    // Usage statistics over one past day of scope 'stats': 500 tokens issued in it, 20,000 attempts (a quarter refused).
    const statsDay = new Date(Math.floor(Date.now() / 86_400_000) * 86_400_000 - 10 * 86_400_000);
    const statsWindow = { scope: 'stats', since: statsDay.toISOString(), until: new Date(statsDay.getTime() + 86_400_000).toISOString() };
    const { rows: statsTokens } = await db.query(
      `insert into request_token (scope, max_uses, client_id, issued_at)
       select 'stats', 1000, 1, $1::timestamptz + n * interval '1 minute' from generate_series(1, 500) as n returning id`,
      [statsDay],
    );
    // The log has a partition per month: the stats day's month is created first (it may be last month).
    await ensureLogPartitions(db, { from: statsDay, to: statsDay });
    await db.query(
      `insert into request_token_log (token_id, error_code, user_id, client_ip, user_agent, status_code, timestamp, client_id)
       select ($2::bigint[])[1 + n % 500], case when n % 4 = 0 then 'MAX_USES_EXCEEDED' end, 'u' || n, '203.0.113.9',
         'Mozilla/5.0 (bench)', case n % 3 when 0 then 200 when 1 then 404 end, $1::timestamptz + n * interval '4 seconds', 1
       from generate_series(0, 19999) as n`,
      [statsDay, statsTokens.map((r) => r.id)],
    );
    // The service compacted the usage rollups at start-up, before this history was written behind its back: the stats
    // day is rolled up again (what `request-token rollups rebuild` does), so that both sides read it from the rollups.
    const rollupPool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
    await rebuildRollups(rollupPool, { since: statsDay, until: new Date(statsDay.getTime() + 86_400_000) }).finally(() =>
      rollupPool.end(),
    );
    await db.query('analyze');

    const visitor = { clientIp: '198.51.100.23', userAgent: 'Mozilla/5.0 (X11; Linux x86_64) bench' };
    // What the SDK sends (sdk/persisted-queries.ts): the document's hash with the variables, the text only once.
    const graphql = (query: string, variables: unknown[]) => {
      const operationName = /^(?:query|mutation)\s+(\w+)/.exec(query)![1];
      const extensions = { persistedQuery: { version: 1, sha256Hash: createHash('sha256').update(query).digest('hex') } };
      return {
        path: '/graphql',
        bodies: variables.map((v) => JSON.stringify({ variables: v, operationName, extensions })),
        register: JSON.stringify({ query, variables: variables.at(-1), operationName, extensions }),
      };
    };
    // What a client that sends texts sends (the SDK with persistedQueries: false, other GraphQL clients).
    const graphqlText = (query: string, variables: unknown[]) => {
      const operationName = /^(?:query|mutation)\s+(\w+)/.exec(query)![1];
      return { path: '/graphql', bodies: variables.map((v) => JSON.stringify({ query, variables: v, operationName })) };
    };
    const redeeming: Pick<Scenario, 'requests' | 'check'> = {
      requests: (side) =>
        side.name === 'ours'
          ? graphql(REDEEM, jwts.map((jwt) => ({ input: { jwt, scope: 'bench', ...visitor } })))
          : { path: '/redeem', bodies: jwts.map((jwt) => JSON.stringify({ jwt, scope: 'bench', ...visitor })) },
      check: (side, b) => (side.name === 'ours' ? b.data?.redeemRequestToken?.__typename === 'Redemption' : !!b.id),
    };
    // Forged JWTs (a bad signature), to the service and to the baseline's `path`.
    const refusing = (path: string): Pick<Scenario, 'requests' | 'check'> => ({
      requests: (side) =>
        side.name === 'ours'
          ? graphql(REDEEM, forged.map((jwt) => ({ input: { jwt, scope: 'bench', ...visitor } })))
          : { path, bodies: forged.map((jwt) => JSON.stringify({ jwt, scope: 'bench', ...visitor })) },
      check: (side, b) => (side.name === 'ours' ? b.data?.redeemRequestToken?.code : b.code) === 'TOKEN_SIGNATURE_INVALID',
    });
    const all: Scenario[] = [
      {
        name: 'redeem',
        ...redeeming,
      },
      {
        // One request at a time: what a single click waits for, with nothing to batch.
        name: 'redeem-low',
        connections: 1,
        repeats: 2,
        ...redeeming,
      },
      {
        // redeem-low with the document's text in every request, as a client without persisted queries sends it.
        name: 'redeem-low-text',
        connections: 1,
        repeats: 2,
        requests: (side) =>
          side.name === 'ours'
            ? graphqlText(REDEEM, jwts.map((jwt) => ({ input: { jwt, scope: 'bench', ...visitor } })))
            : redeeming.requests(side),
        check: redeeming.check,
        informational: 'the service is sent the document text (762 bytes) instead of its hash (the SDK\'s way)',
      },
      {
        // Both sides log every attempt: the baseline with one INSERT per refusal, the service by its refusal log.
        name: 'refuse',
        ...refusing('/redeem'),
        logsUnowned: () => true,
      },
      {
        // The baseline as it was until 2026-11-30: it stores nothing for these attempts, the service still does.
        name: 'refuse-bare',
        ...refusing('/redeem-bare'),
        logsUnowned: (side) => side.name === 'ours',
        informational: 'the baseline stores nothing for the attempt, the service logs it',
      },
      {
        name: 'issue',
        requests: (side) => {
          const inputs = Array.from({ length: 1000 }, (_, i) => ({ scope: 'issued', userId: `user-${i}`, maxUses: 1 }));
          return side.name === 'ours'
            ? graphql(CREATE, inputs.map((input) => ({ input })))
            : { path: '/issue', bodies: inputs.map((input) => JSON.stringify(input)) };
        },
        check: (side, b) =>
          side.name === 'ours' ? b.data?.createRequestToken?.__typename === 'CreateRequestTokenSuccess' : !!b.jwt,
      },
      {
        name: 'read',
        requests: (side) =>
          side.name === 'ours'
            ? graphql(LOGS, readIds.map((tokenId) => ({ filter: { tokenId }, first: 20 })))
            : { path: '/logs', bodies: readIds.map((tokenId) => JSON.stringify({ tokenId, first: 20 })) },
        check: (side, b) =>
          (side.name === 'ours' ? b.data?.requestTokenLogs?.edges?.length : b.nodes?.length) === 20,
      },
      {
        name: 'stats',
        requests: (side) =>
          side.name === 'ours'
            ? graphql(STATS, [{ filter: statsWindow, bucket: 'HOUR' }])
            : { path: '/stats', bodies: [JSON.stringify({ ...statsWindow, bucket: 'HOUR' })] },
        check: (side, b) =>
          side.name === 'ours'
            ? b.data?.usageStats?.totals?.redemptions === 15000 && b.data.usageStats.buckets.length === 24
            : b.rows?.filter((r: any) => r.per_scope).reduce((n: number, r: any) => n + r.redemptions, 0) === 15000,
      },
    ];
    const scenarios = all.filter((s) => settings.scenarios.includes(s.name));

    const headers = { authorization: `Bearer ${apiKey}` };
    for (const scenario of scenarios) {
      for (const side of sides) {
        const { path, bodies, register } = scenario.requests(side);
        // A persisted query's text first, then a body as the runs send it.
        for (const sent of register ? [register, bodies[bodies.length - 1]] : [bodies[bodies.length - 1]]) {
          const res = await fetch(`${side.url}${path}`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', ...headers },
            body: sent,
          });
          const body = await res.json();
          if (!scenario.check(side, body)) throw new Error(`${side.name} ${scenario.name}: unexpected answer ${JSON.stringify(body)}`);
        }
      }
    }
    // The work each side stores: a refusal no token owns leaves a row (token id 0) where the scenario says it must,
    // and none where it says not (the service writes its queued rows within REFUSAL_LOG_FLUSH_MS).
    const unowned = async () => (await db.query('select count(*)::int as n from request_token_log where token_id = 0')).rows[0].n as number;
    for (const scenario of scenarios) {
      if (!scenario.logsUnowned) continue;
      for (const side of sides) {
        // Rows of earlier refusals still queued in the service are written first (unchanged over two flush periods).
        let before = await unowned();
        for (let settled = -1; settled !== before; ) {
          settled = before;
          await new Promise((r) => setTimeout(r, 600));
          before = await unowned();
        }
        const { path, bodies } = scenario.requests(side);
        await fetch(`${side.url}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...headers },
          body: bodies[0],
        }).then((res) => res.arrayBuffer());
        const must = scenario.logsUnowned(side);
        const deadline = Date.now() + 2_000;
        let after = await unowned();
        while (must && after === before && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 50));
          after = await unowned();
        }
        if (after !== before + (must ? 1 : 0)) {
          throw new Error(`${side.name} ${scenario.name}: ${after - before} unowned log rows for one refusal, expected ${must ? 1 : 0}`);
        }
      }
    }

    const loadBefore = loadavg();
    const results = new Map<string, Run[]>();
    if (settings.warmupSeconds > 0) {
      log(`warming up (${settings.warmupSeconds} s per scenario and side)`);
      for (const scenario of scenarios) for (const side of sides) await load(side, scenario, settings.warmupSeconds, headers, dir);
    }
    for (let round = 0; round < settings.rounds; round++) {
      for (const scenario of scenarios) {
        const repeats = scenario.repeats ?? 1;
        for (let repeat = 0; repeat < repeats; repeat++) {
          const pair = round * repeats + repeat;
          for (const side of pair % 2 ? [...sides].reverse() : sides) {
            const run = await load(side, scenario, settings.seconds / repeats, headers, dir);
            const keyName = `${scenario.name}/${side.name}`;
            results.set(keyName, [...(results.get(keyName) ?? []), run]);
            log(`round ${round + 1}${repeats > 1 ? `.${repeat + 1}` : ''} ${keyName}: ${Math.round(run.rps)} req/s, p50 ${ms(run.p50)} ms, p99 ${ms(run.p99)} ms, ` +
              `peak RSS ${mb(run.peakRss)}, server CPU ${Math.round(run.cpuPerRequest)} µs/request, ` +
              `PostgreSQL ${Math.round(run.dbCpuPerRequest)}, load generator ${Math.round(run.loadCpuPerRequest)}${run.non2xx || run.errors || run.timeouts ? `, non-2xx ${run.non2xx}, errors ${run.errors}, timeouts ${run.timeouts}` : ''}`);
          }
        }
      }
    }

    const bulkResults = new Map<string, { seconds: number; peakRss: number }[]>();
    if (settings.scenarios.includes('bulk') && settings.bulk > 0) {
      const csv = join(dir, 'recipients.csv');
      const rows = Array.from({ length: settings.bulk }, (_, i) => `recipient-${i},${i % 3 ? 'weekly' : 'daily'}`);
      await writeFile(csv, `userId,list\n${rows.join('\n')}\n`);
      for (let round = 0; round < settings.bulkRounds; round++) {
        for (const name of round % 2 ? ['baseline', 'ours'] : ['ours', 'baseline']) {
          const outFile = join(dir, `links-${name}.csv`);
          const out = createWriteStream(outFile);
          await new Promise((r) => out.once('open', r));
          const started = performance.now();
          const child =
            name === 'ours'
              ? spawn(process.execPath, ['bin/request-token.mjs', 'issue', '--scope', 'bulk', '--csv', csv,
                  '--url', oursUrl, '--api-key', apiKey], { cwd: ROOT, stdio: ['ignore', out, 'inherit'] })
              : node(['bench/bulk-baseline.ts', csv], { ...common, BULK_SCOPE: 'bulk' }, ['ignore', out, 'inherit']);
          const watched = name === 'ours' ? ours.pid! : child.pid!;
          await resetPeak(ours.pid!);
          let peak = 0;
          const sampler = setInterval(() => {
            void memory(watched).then((m) => (peak = Math.max(peak, m.rss)), () => {});
          }, 100);
          const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
          clearInterval(sampler);
          const seconds = (performance.now() - started) / 1000;
          out.end();
          if (code !== 0) throw new Error(`bulk ${name} exited with ${code}`);
          const lines = (await readFile(outFile, 'utf8')).trim().split('\n').length - 1;
          if (lines !== settings.bulk) throw new Error(`bulk ${name} wrote ${lines} links, expected ${settings.bulk}`);
          if (name === 'ours') peak = Math.max(peak, (await memory(ours.pid!)).hwm);
          bulkResults.set(name, [...(bulkResults.get(name) ?? []), { seconds, peakRss: peak }]);
          log(`bulk round ${round + 1} ${name}: ${settings.bulk} tokens in ${seconds.toFixed(2)} s (${Math.round(settings.bulk / seconds)} tokens/s)`);
        }
      }
    }
    const loadAfter = loadavg();

    // The table.
    const lines: string[] = [];
    lines.push(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${mb(totalmem())} RAM, Node ${process.version}, PostgreSQL ${pgVersion}`);
    lines.push(`settings: ${settings.connections} connections, ${settings.seconds} s per run, ${settings.rounds} rounds (medians; each ratio is the median of the rounds' ratios; one-connection scenarios: 2 runs of ${settings.seconds / 2} s per side and round, a ratio per pair of runs), DB pool ${settings.poolSize} for both sides; load average before ${loadBefore.map((l) => l.toFixed(2)).join(' ')}, after ${loadAfter.map((l) => l.toFixed(2)).join(' ')}`);
    lines.push('');
    lines.push('| scenario | ours req/s | baseline req/s | ratio | ours p50 / p99 ms | baseline p50 / p99 ms | p99 ratio | ours peak RSS | baseline peak RSS | server CPU µs/req ours / baseline | PostgreSQL CPU µs/req ours / baseline | load generator CPU µs/req ours / baseline |');
    lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|');
    const verdicts: string[] = [];
    const perRound: string[] = [];
    for (const scenario of scenarios) {
      const o = results.get(`${scenario.name}/ours`)!;
      const b = results.get(`${scenario.name}/baseline`)!;
      const oRps = median(o.map((r) => r.rps));
      const bRps = median(b.map((r) => r.rps));
      const oP99 = median(o.map((r) => r.p99));
      const bP99 = median(b.map((r) => r.p99));
      const oRss = Math.max(...o.map((r) => r.peakRss));
      // A round runs the scenario's two sides back to back, so its ratio compares runs seconds apart; the machine's
      // speed drifts by up to 2× over minutes (BENCHMARKS.md, "Method"), so the ratios are the rounds' medians.
      const roundRatios = (pick: (r: Run) => number) => o.map((r, i) => pick(r) / pick(b[i]));
      const ratio = median(roundRatios((r) => r.rps));
      const p99Ratio = median(roundRatios((r) => r.p99));
      perRound.push(`${scenario.name} ${roundRatios((r) => r.rps).map((x) => x.toFixed(2)).join(' ')}`);
      lines.push(
        `| ${scenario.name} | ${Math.round(oRps)} | ${Math.round(bRps)} | ${ratio.toFixed(2)} | ` +
          `${ms(median(o.map((r) => r.p50)))} / ${ms(oP99)} | ${ms(median(b.map((r) => r.p50)))} / ${ms(bP99)} | ${p99Ratio.toFixed(2)} | ` +
          `${mb(oRss)} | ${mb(Math.max(...b.map((r) => r.peakRss)))} | ` +
          `${Math.round(median(o.map((r) => r.cpuPerRequest)))} / ${Math.round(median(b.map((r) => r.cpuPerRequest)))} | ` +
          `${Math.round(median(o.map((r) => r.dbCpuPerRequest)))} / ${Math.round(median(b.map((r) => r.dbCpuPerRequest)))} | ` +
          `${Math.round(median(o.map((r) => r.loadCpuPerRequest)))} / ${Math.round(median(b.map((r) => r.loadCpuPerRequest)))} |`,
      );
      // Issue 14's targets, for every scenario: throughput at least the baseline's, p99 at most 1.5 × the baseline's,
      // peak RSS at most 250 MB.
      if (scenario.informational) {
        verdicts.push(`${scenario.name}: throughput ratio ${ratio.toFixed(2)}, p99 ratio ${p99Ratio.toFixed(2)} → for comparison only (${scenario.informational})`);
        continue;
      }
      const ok = ratio >= THROUGHPUT_FLOOR && p99Ratio <= P99_CEILING && oRss <= RSS_CEILING;
      verdicts.push(
        `${scenario.name}: throughput ratio ${ratio.toFixed(2)} (floor ${THROUGHPUT_FLOOR}), ` +
          `p99 ratio ${p99Ratio.toFixed(2)} (ceiling ${P99_CEILING}), peak RSS ${mb(oRss)} (ceiling ${mb(RSS_CEILING)}) → ` +
          `${ok ? 'met' : 'NOT met'}`,
      );
    }
    if (bulkResults.size === 2) {
      const o = median(bulkResults.get('ours')!.map((r) => r.seconds));
      const b = median(bulkResults.get('baseline')!.map((r) => r.seconds));
      lines.push('');
      lines.push(`| bulk, ${settings.bulk} tokens end to end | ours | baseline (COPY + sign) | ratio (speed) |`);
      lines.push('|---|---|---|---|');
      lines.push(`| seconds | ${o.toFixed(2)} | ${b.toFixed(2)} | ${(b / o).toFixed(2)} |`);
      lines.push(`| tokens/s | ${Math.round(settings.bulk / o)} | ${Math.round(settings.bulk / b)} | |`);
      lines.push(`| peak RSS (service / baseline process) | ${mb(Math.max(...bulkResults.get('ours')!.map((r) => r.peakRss)))} | ${mb(Math.max(...bulkResults.get('baseline')!.map((r) => r.peakRss)))} | |`);
      const bulkRss = Math.max(...bulkResults.get('ours')!.map((r) => r.peakRss));
      verdicts.push(
        `bulk: speed ratio ${(b / o).toFixed(2)} (floor ${THROUGHPUT_FLOOR}), service peak RSS ${mb(bulkRss)} ` +
          `(ceiling ${mb(RSS_CEILING)}) → ${b / o >= THROUGHPUT_FLOOR && bulkRss <= RSS_CEILING ? 'met' : 'NOT met'}`,
      );
    }
    lines.push('');
    lines.push(`throughput ratio of each round (ours / baseline, in round order): ${perRound.join('; ')}`);
    lines.push('');
    lines.push(...verdicts.map((v) => `- ${v}`));
    process.stdout.write(`${lines.join('\n')}\n`);
    if (env.BENCH_JSON) {
      await writeFile(env.BENCH_JSON, JSON.stringify({ settings, runs: Object.fromEntries(results), bulk: Object.fromEntries(bulkResults) }, null, 2));
    }
  } finally {
    await admin.client?.end().catch(() => {});
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

// The SDK's documents (sdk/operations in the SDK work), inlined so that the bench does not depend on the SDK build.
const TOKEN_FIELDS = 'id scope targetUrl userId loginMode data maxUses usedToDate issuedAt notBefore expiresAt revokedAt status';
const REDEEM = `mutation RedeemRequestToken($input: RedeemRequestTokenInput!) {
  redeemRequestToken(input: $input) {
    __typename
    ... on Redemption { id loginMode authenticateAs data usesRemaining token { ${TOKEN_FIELDS} } }
    ... on TokenRejectedError { code message tokenId logId }
    ... on ValidationError { code message issues { path message } }
  }
}`;
const CREATE = `mutation CreateRequestToken($input: CreateRequestTokenInput!) {
  createRequestToken(input: $input) {
    __typename
    ... on CreateRequestTokenSuccess { jwt url token { ${TOKEN_FIELDS} } }
    ... on ValidationError { code message issues { path message } }
  }
}`;
const LOGS = `query RequestTokenLogs($filter: RequestTokenLogFilter, $first: Int, $after: String) {
  requestTokenLogs(filter: $filter, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id errorCode userId clientIp userAgent statusCode timestamp token { id scope } } }
  }
}`;

const COUNTS = `issued redemptions released refusals refusalsByCode { code count }
  responseStatuses { status1xx status2xx status3xx status4xx status5xx unrecorded }`;
const STATS = `query UsageStats($filter: UsageStatsFilter, $bucket: StatsBucket!) {
  usageStats(filter: $filter, bucket: $bucket) {
    bucket timeZone since until
    buckets { start end ${COUNTS} }
    totals { ${COUNTS} }
    scopes { scope ${COUNTS} }
  }
}`;

main().catch((error) => {
  process.stderr.write(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
