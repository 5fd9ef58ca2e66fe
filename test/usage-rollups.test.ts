import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importDjango } from '../cli/django-import.js';
import { ERROR_CODES, type RejectionCode } from '../server/domain/errors.js';
import { ensureLogPartitions } from '../server/domain/log-partitions.js';
import { truncateLogs } from '../server/domain/log-retention.js';
import { rollupCountQuery, rollupTokenCountQuery } from '../server/domain/log-counts.js';
import { listLogs, recordResponseStatus } from '../server/domain/logs.js';
import { listTokens } from '../server/domain/tokens.js';
import {
  compactRollups,
  createRollupCompactor,
  markStaleRange,
  rebuildRollups,
  ROLLUP_LAG_MS,
} from '../server/domain/usage-rollups.js';
import { STATS_BUCKETS, usageStats, usageStatsScanQuery, type StatsBucket } from '../server/domain/usage-stats.js';
import { djangoTablesSql, insertDjangoTokens, runCli } from './support/django.js';
import { startTestServer, TEST_SECRET, type TestServer } from './support/harness.js';
import { issue, redeem } from './support/operations.js';

/**
 * usageStats reads what is compacted from the rollups and the rest from the log (server/domain/usage-rollups.ts).
 * Here it must give exactly what the full scan of the log (usageStatsScanQuery, the statement it replaced) gives, on
 * random data across hour boundaries, two tenants and several scopes, over random windows and both buckets: before
 * and after compactions (to random watermarks too, inside hours, one after another), after status updates and
 * releases of rolled-up rows, refusals written late with old times, retention, an import of old history and rows
 * written by hand with markStaleRange. ROLLUP_RUNS sets the number of
 * random histories (default 4); fast-check prints the seed of a failing one.
 */

const HOUR = 3_600_000;
const MINUTE = 60_000;
const RUNS = Number(process.env.ROLLUP_RUNS ?? 4);
/**
 * The history spans this many hours back from the start of the current one, and the current hour so far: a few
 * whole UTC days, so that windows by the day read day rows (usage_rollup_day) as well as hourly ones.
 */
const SPAN_HOURS = 100;
const SCOPES = ['newsletter', 'login', 'invite'];
const REFUSALS = ERROR_CODES.filter((c): c is RejectionCode => c !== 'VALIDATION_FAILED' && c !== 'NOT_FOUND');
const UNTIED: RejectionCode[] = ['TOKEN_MALFORMED', 'TOKEN_SIGNATURE_INVALID', 'TOKEN_NOT_FOUND'];

let server: TestServer;
/** The second tenant's client id (the first is the default client, 1). */
let other: string;

beforeAll(async () => {
  server = await startTestServer();
  [{ id: other }] = await server.sql(`insert into api_client (name) values ('other') returning id::text as id`);
});
afterAll(() => server?.close());

const pool = () => server.db.pool;

async function reset() {
  await server.services.refusalLog.flush();
  await server.sql(`truncate request_token_log, request_token_idempotency, request_token, usage_rollup, usage_rollup_day, usage_rollup_stale`);
  await server.sql(`update usage_rollup_state set sealed_until = null, compacted_until = null`);
  await server.sql(`drop schema if exists django cascade`);
}

/** The time span of the data: from `origin` (SPAN_HOURS before the current hour) to now. */
function span() {
  const now = Date.now();
  const origin = Math.floor(now / HOUR) * HOUR - SPAN_HOURS * HOUR;
  return { now, origin, length: now - origin };
}

/** Any time of the span, a third of them on an hour boundary. */
const instant = (length: number) =>
  fc.oneof(
    fc.integer({ min: 0, max: Math.floor(length / HOUR) }).map((h) => h * HOUR),
    fc.integer({ min: 0, max: length }),
  );

/** usageStats from the rollups equals the full scan, over random windows, buckets, tenants and scopes. */
async function expectExact(numRuns = 20, range: { origin: number; length: number } = span()) {
  const { origin, length } = range;
  const windows = fc.record({
    start: instant(length),
    size: fc.oneof(instant(length), fc.integer({ min: 1, max: 2 * HOUR })),
    bucket: fc.constantFrom<StatsBucket>(...STATS_BUCKETS),
    tenant: fc.constantFrom<string | null>(null, '1', other),
    scope: fc.constantFrom<string | null>(null, ...SCOPES),
  });
  await fc.assert(
    fc.asyncProperty(windows, async ({ start, size, bucket, tenant, scope }) => {
      const since = new Date(origin + start);
      // Past now too: the current hour, and hours that have nothing yet.
      // (At most 999 hours by the hour: usageStats refuses more buckets.)
      const until = new Date(since.getTime() + Math.max(1, bucket === 'HOUR' ? Math.min(size, 999 * HOUR) : size));
      await expectSame({ since, until, scope }, bucket, tenant);
    }),
    { numRuns, endOnFailure: true },
  );
  // The windows the dashboard asks for by default: the last 48 hours and 30 days, the current hour included.
  for (const bucket of STATS_BUCKETS) await expectSame({}, bucket, null);
  // Listings' counts from the rollups, open-ended (the listings' default) and over random windows.
  for (const tenant of [null, '1', other]) {
    await expectSameCount({}, tenant);
    for (const scope of [null, ...SCOPES]) await expectSameTokenCount(scope, tenant);
  }
  await fc.assert(
    fc.asyncProperty(
      fc.record({ start: instant(length), size: fc.oneof(instant(length), fc.integer({ min: 1, max: 2 * HOUR })) }),
      fc.constantFrom<string | null>(null, '1', other),
      fc.constantFrom(true, false, null),
      fc.constantFrom('both', 'since', 'until', 'neither'),
      fc.constantFrom<string | null>(null, null, ...SCOPES),
      async ({ start, size }, tenant, failed, bounds, scope) => {
        const since = new Date(origin + start);
        const until = new Date(since.getTime() + size);
        await expectSameCount(
          {
            failed,
            scope,
            since: bounds === 'until' || bounds === 'neither' ? null : since,
            until: bounds === 'since' || bounds === 'neither' ? null : until,
          },
          tenant,
        );
      },
    ),
    { numRuns, endOnFailure: true },
  );
}

/** A token listing's totalCount (from the rollups and the tokens issued since) equals count(*) of its tokens. */
async function expectSameTokenCount(scope: string | null, tenant: string | null) {
  expect(rollupTokenCountQuery(tenant, { scope }), 'answered from the rollups').not.toBeNull();
  const deps = { orm: server.db.orm, pool: pool(), tenant, config: { clockToleranceSeconds: 0 } };
  const { totalCount } = await listTokens(deps, { scope }, { first: 0 });
  const values: unknown[] = [];
  const where = ['true'];
  if (tenant !== null) where.push(`client_id = $${values.push(tenant)}`);
  if (scope !== null) where.push(`scope = $${values.push(scope)}`);
  const [{ n }] = await server.sql(`select count(*)::int as n from request_token where ${where.join(' and ')}`, values);
  expect(totalCount, `token count scope ${scope} tenant ${tenant}`).toBe(n);
}

/** A log listing's totalCount (from the rollups and the log's tail) equals count(*) of the log over the same filter. */
async function expectSameCount(
  filter: { failed?: boolean | null; scope?: string | null; since?: Date | null; until?: Date | null },
  tenant: string | null,
) {
  expect(rollupCountQuery(tenant, filter), 'answered from the rollups').not.toBeNull();
  const deps = { orm: server.db.orm, pool: pool(), tenant, config: { clockToleranceSeconds: 0 } };
  const { totalCount } = await listLogs(deps, filter, { first: 0 });
  const values: unknown[] = [];
  const where = ['true'];
  if (tenant !== null) where.push(`client_id = $${values.push(tenant)}`);
  if (filter.failed != null) where.push(`error_code is ${filter.failed ? 'not ' : ''}null`);
  // The listing's scope: the row's token is one of the caller's tokens of that scope.
  if (filter.scope != null) {
    const owner = tenant === null ? '' : ` and client_id = $${values.push(tenant)}`;
    where.push(`token_id in (select id from request_token where scope = $${values.push(filter.scope)}${owner})`);
  }
  if (filter.since) where.push(`timestamp >= $${values.push(filter.since)}`);
  if (filter.until) where.push(`timestamp < $${values.push(filter.until)}`);
  const [{ n }] = await server.sql(`select count(*)::int as n from request_token_log where ${where.join(' and ')}`, values);
  expect(totalCount, `count ${JSON.stringify(filter)} tenant ${tenant}`).toBe(n);
}

/** Every whole compacted UTC day, and only those, has day rows: the sums of its hourly rows. */
async function expectDays() {
  const differences = await server.sql(
    `with hourly as (
       select date_trunc('day', r.hour, 'UTC') as day, client_id, scope, error_code, sum(attempts)::int as attempts,
         sum(released)::int as released, sum(status_1xx)::int as s1, sum(status_2xx)::int as s2, sum(status_3xx)::int as s3,
         sum(status_4xx)::int as s4, sum(status_5xx)::int as s5, sum(unrecorded)::int as unrecorded, sum(issued)::int as issued
       from usage_rollup r, usage_rollup_state s
       where r.hour < date_trunc('day', s.compacted_until, 'UTC')
       group by 1, 2, 3, 4
     ), daily as (
       select day, client_id, scope, error_code, attempts, released, status_1xx, status_2xx, status_3xx, status_4xx,
         status_5xx, unrecorded, issued
       from usage_rollup_day
     )
     (select 'hourly' as only, * from hourly except select 'hourly', * from daily)
     union all
     (select 'daily', * from daily except select 'daily', * from hourly)`,
  );
  expect(differences).toEqual([]);
}

async function expectSame(filter: { since?: Date; until?: Date; scope?: string | null }, bucket: StatsBucket, tenant: string | null) {
  const deps = { pool: pool(), tenant };
  const now = new Date();
  const fromRollups = await usageStats(deps, filter, bucket, now);
  const fromScan = await usageStats(deps, filter, bucket, now, usageStatsScanQuery);
  expect(fromRollups, `${bucket} ${JSON.stringify(filter)} tenant ${tenant}`).toEqual(fromScan);
}

const historyArb = (length: number, minLogs = 0) =>
  fc.record({
    tokens: fc.array(
      fc.record({ client: fc.constantFrom('1', 'other'), scope: fc.constantFrom(...SCOPES), at: instant(length) }),
      { minLength: 3, maxLength: 30 },
    ),
    logs: fc.array(
      fc.record({
        token: fc.option(fc.nat(), { nil: null, freq: 5 }),
        client: fc.constantFrom<string | null>(null, '1', 'other'),
        code: fc.option(fc.constantFrom(...REFUSALS), { nil: null, freq: 2 }),
        status: fc.option(fc.integer({ min: 100, max: 599 }), { nil: null }),
        released: fc.boolean(),
        at: instant(length),
      }),
      { minLength: minLogs, maxLength: 250 },
    ),
  });

const laterArb = (length: number) =>
  fc.record({
    /** Refusals queued with their attempt's (old) time and written late by the batched writer. */
    lateRefusals: fc.array(
      fc.record({ code: fc.constantFrom(...UNTIED), client: fc.constantFrom<string | null>(null, '1', 'other'), at: instant(length) }),
      { maxLength: 15 },
    ),
    /** Statuses recorded (some with the use released) on random rows, long after. */
    statuses: fc.array(fc.record({ row: fc.nat(), status: fc.integer({ min: 100, max: 599 }), release: fc.boolean() }), {
      maxLength: 15,
    }),
    /** Log rows retention deletes (the oldest by id). */
    retention: fc.integer({ min: 1, max: 40 }),
    /** Django history: tokens and their log rows with old times. */
    imported: fc.array(
      fc.record({ scope: fc.constantFrom(...SCOPES), at: instant(length), uses: fc.array(instant(length), { maxLength: 4 }) }),
      { maxLength: 6 },
    ),
    /** Rows written by hand into one old hour, marked with markStaleRange in the same transaction. */
    byHand: fc.record({
      hour: fc.integer({ min: 0, max: SPAN_HOURS - 1 }),
      rows: fc.array(fc.record({ at: fc.integer({ min: 0, max: HOUR - 1 }), code: fc.constantFrom(...REFUSALS) }), { maxLength: 5 }),
    }),
    /** Redemptions and refusals through the API, now. */
    live: fc.nat({ max: 3 }),
  });

/**
 * Compactions before the late changes, oldest first: each to a random instant of the span (the watermark on the
 * minute before it, mostly inside an hour), or (null) to the seal the service uses.
 */
const sealsArb = (length: number) =>
  fc
    .array(fc.option(instant(length), { nil: null, freq: 4 }), { minLength: 1, maxLength: 3 })
    .map((seals) => seals.sort((a, b) => (a ?? Infinity) - (b ?? Infinity)));

type History = ReturnType<typeof historyArb> extends fc.Arbitrary<infer T> ? T : never;
type Later = ReturnType<typeof laterArb> extends fc.Arbitrary<infer T> ? T : never;

const clientOf = (c: string | null) => (c === 'other' ? other : c);

/** Writes the history straight into the tables (before any compaction, as a database migrated with data). */
async function writeHistory(origin: number, history: History) {
  const tokens = await server.sql<{ id: string; client_id: string }>(
    `insert into request_token (client_id, scope, max_uses, issued_at)
     select client_id, scope, 1000, at from json_to_recordset($1::json) as r(client_id bigint, scope text, at timestamptz)
     returning id::text, client_id::text`,
    [JSON.stringify(history.tokens.map((t) => ({ client_id: clientOf(t.client), scope: t.scope, at: new Date(origin + t.at) })))],
  );
  const rows = history.logs.map((l) => {
    const token = l.token === null ? null : tokens[l.token % tokens.length];
    const code = token === null ? UNTIED[(l.status ?? 0) % UNTIED.length] : l.code;
    return {
      token_id: token?.id ?? '0',
      client_id: token ? token.client_id : clientOf(l.client),
      error_code: code,
      status_code: l.status,
      released_at: code === null && token && l.released ? new Date(origin + l.at + 1000) : null,
      timestamp: new Date(origin + l.at),
    };
  });
  await server.sql(
    `insert into request_token_log (token_id, client_id, error_code, status_code, released_at, timestamp)
     select * from json_to_recordset($1::json)
       as r(token_id bigint, client_id bigint, error_code text, status_code smallint, released_at timestamptz, timestamp timestamptz)`,
    [JSON.stringify(rows)],
  );
}

/** Everything that changes rolled-up hours afterwards, each through the code that does it in the service. */
async function writeLater(origin: number, later: Later, check: () => Promise<void>) {
  const old = (at: number) => new Date(Math.min(origin + at, Date.now() - ROLLUP_LAG_MS - 60_000));

  for (const r of later.lateRefusals) {
    server.services.refusalLog.record(
      { code: r.code, userId: null, clientIp: null, userAgent: null, clientId: clientOf(r.client) },
      old(r.at),
    );
  }
  await server.services.refusalLog.flush();
  await check();

  const logs = await server.sql<{ id: string; ok: boolean }>(
    `select id::text, error_code is null and token_id <> 0 as ok from request_token_log order by id`,
  );
  // Releases first, then plain statuses: each step is checked on its own, so that one kind of change cannot mark
  // (and so hide) the hours another one forgot.
  const redemptions = logs.filter((l) => l.ok);
  for (const release of [true, false]) {
    for (const s of later.statuses.filter((s) => s.release === release)) {
      const among = release ? redemptions : logs;
      if (among.length === 0) break;
      const row = among[s.row % among.length];
      await recordResponseStatus(
        { orm: server.db.orm, pool: server.db.pool, tenant: null, refusalLog: server.services.refusalLog },
        { redemptionId: row.id, statusCode: release ? 500 + (s.status % 100) : s.status, releaseUse: release },
      );
    }
    await check();
  }

  if (later.retention > 0 && logs.length > later.retention) {
    await truncateLogs(pool(), { maxCount: logs.length - later.retention, batchSize: 7 });
    await check();
  }

  if (later.imported.length > 0) {
    await importHistory(origin, later);
    await check();
  }

  if (later.byHand.rows.length > 0) {
    const hour = origin + later.byHand.hour * HOUR;
    const client = await pool().connect();
    try {
      await client.query('begin');
      await client.query(
        `insert into request_token_log (token_id, error_code, client_id, timestamp)
         select 0, * from unnest($1::text[], $2::bigint[], $3::timestamptz[])`,
        [later.byHand.rows.map((r) => r.code), later.byHand.rows.map(() => other), later.byHand.rows.map((r) => new Date(hour + r.at))],
      );
      await markStaleRange(client, new Date(hour), new Date(hour + HOUR));
      await client.query('commit');
    } finally {
      client.release();
    }
  }

  for (let i = 0; i < later.live; i++) {
    const { jwt } = await issue(server, { scope: SCOPES[i % SCOPES.length], maxUses: 1 });
    await redeem(server, { jwt, scope: SCOPES[i % SCOPES.length] });
    await redeem(server, { jwt, scope: SCOPES[i % SCOPES.length] }); // MAX_USES_EXCEEDED
    await redeem(server, { jwt: 'not-a-jwt', scope: 'login' });
  }
  await server.services.refusalLog.flush();
}

let imports = 0;
/** The Django import (cli/django-import.ts) of tokens and log rows with old times, from a schema of this database. */
async function importHistory(origin: number, later: Later) {
  const base = 500_000 + 1_000 * imports++;
  const source = new pg.Client({ connectionString: server.databaseUrl });
  await source.connect();
  try {
    await source.query(`drop schema if exists django cascade; ${djangoTablesSql('django')}`);
    const tokens = later.imported.map((t, i) => ({
      id: base + i, login_mode: 'None' as const, user_id: null, scope: t.scope, expiration_time: null, not_before_time: null,
      data: null, issued_at: new Date(origin + t.at), max_uses: 10, used_to_date: t.uses.length,
    }));
    await insertDjangoTokens(source, 'django', tokens);
    let id = base;
    for (const [i, t] of later.imported.entries()) {
      for (const at of t.uses) {
        await source.query(
          `insert into django.request_token_requesttokenlog (id, token_id, user_agent, status_code, timestamp) values ($1, $2, 'ua', 200, $3)`,
          [id++, base + i, new Date(origin + at)],
        );
      }
    }
    await importDjango({ source, target: pool(), schema: 'django', config: server.config });
  } finally {
    await source.end();
  }
}

describe('usage statistics from rollups', () => {
  it('equal the full scan of the log on random histories, before and after compactions and late changes', async () => {
    const { length } = span();
    await fc.assert(
      fc.asyncProperty(historyArb(length), laterArb(length), sealsArb(length), async (history, later, seals) => {
        await reset();
        const { origin } = span();
        await writeHistory(origin, history);
        await expectExact();

        // Each compaction extends the rows of the hour the one before stopped in, and stops inside an hour itself.
        for (const [i, at] of seals.entries()) {
          const target = at === null ? null : origin + at;
          const compacted = await compactRollups(pool(), target === null ? {} : { lagMs: Date.now() - target });
          expect(compacted).toMatchObject({ skipped: false, waitedOut: false });
          const sealed = Math.floor((target ?? Date.now() - ROLLUP_LAG_MS) / MINUTE) * MINUTE;
          // The race with the clock at a minute's turn: compacted to the seal of either side of it.
          expect([sealed, sealed + MINUTE, sealed - MINUTE]).toContain(compacted.compactedUntil?.getTime());
          await expectDays();
          await expectExact(i === seals.length - 1 ? 20 : 5);
        }

        // After each kind of change, not compacted again yet: the changed hours are read from the log.
        await writeLater(origin, later, () => expectExact(10));
        await expectExact();
        const second = await compactRollups(pool());
        expect(second.skipped).toBe(false);
        expect(await server.sql('select hour from usage_rollup_stale')).toEqual([]);
        await expectDays();
        await expectExact();
      }),
      { numRuns: RUNS, endOnFailure: true },
    );
    // Not vacuous: the rollups hold the compacted hours, and their whole days.
    expect((await server.sql('select count(*)::int as n from usage_rollup'))[0].n).toBeGreaterThan(0);
    expect((await server.sql('select count(*)::int as n from usage_rollup_day'))[0].n).toBeGreaterThan(0);
  }, Math.max(30_000, RUNS * 15_000));

  it('equal the full scan after retention dropped whole months and cut through another', async () => {
    await reset();
    // 60 days of history: the month of its start ended more than 20 days ago, so maxDays 20 drops it whole.
    const now = Date.now();
    const origin = Math.floor(now / HOUR) * HOUR - 60 * 24 * HOUR;
    const length = now - origin;
    // Months dropped by an earlier run come back first (the harness created them).
    await ensureLogPartitions(pool(), { from: new Date(origin), to: new Date(now) });
    const [history] = fc.sample(historyArb(length, 200), { numRuns: 1 });
    await writeHistory(origin, history);
    await compactRollups(pool());
    await expectDays();
    await expectExact(10, { origin, length });

    const dropped: string[] = [];
    const removed = await truncateLogs(pool(), { maxDays: 20, batchSize: 50 }, {
      onBatch: (step) => step.droppedPartition && dropped.push(step.droppedPartition),
    });
    expect(dropped.length).toBeGreaterThan(0);
    expect(removed.count).toBeGreaterThan(0);
    await expectExact(20, { origin, length });
    await compactRollups(pool());
    await expectDays();
    await expectExact(20, { origin, length });
  });

  it('hold the hour the watermark stops in up to the watermark, extended by each compaction and rebuilt when stale', async () => {
    await reset();
    const hour = Math.floor(Date.now() / HOUR) * HOUR - 3 * HOUR;
    const [token] = await server.sql<{ id: string }>(
      `insert into request_token (client_id, scope, max_uses, issued_at) values (1, 'login', 100, $1) returning id::text`,
      [new Date(hour + MINUTE)],
    );
    // Redemptions of one token at these minutes of the hour (one key of the rollups: the counts must add up).
    const minutes = [5, 12, 20, 31, 44, 58];
    const logged = await server.sql<{ id: string }>(
      `insert into request_token_log (token_id, client_id, timestamp) select $1, 1, t from unnest($2::timestamptz[]) as t
       returning id::text`,
      [token.id, minutes.map((m) => new Date(hour + m * MINUTE))],
    );
    const compactTo = async (at: number) => {
      const result = await compactRollups(pool(), { lagMs: Date.now() - at });
      expect(result.compactedUntil!.getTime()).toBe(Math.floor(at / MINUTE) * MINUTE);
      return result;
    };
    const rolledUp = async () =>
      (await server.sql<{ attempts: number; issued: number; s2: number }>(
        `select coalesce(sum(attempts), 0)::int as attempts, coalesce(sum(issued), 0)::int as issued,
           coalesce(sum(status_2xx), 0)::int as s2 from usage_rollup where hour = $1`,
        [new Date(hour)],
      ))[0];
    const range = { origin: hour - HOUR, length: 3 * HOUR };

    await compactTo(hour + 15 * MINUTE + 30_000);
    expect(await rolledUp()).toEqual({ attempts: 2, issued: 1, s2: 0 });
    await expectExact(10, range);
    // Each compaction adds the rows since the last one to the hour's rows.
    expect(await compactTo(hour + 32 * MINUTE)).toMatchObject({ minutes: 17, rebuilt: 0 });
    expect(await rolledUp()).toEqual({ attempts: 4, issued: 1, s2: 0 });
    expect(await compactTo(hour + 32 * MINUTE)).toMatchObject({ minutes: 0, rebuilt: 0 });
    expect(await rolledUp()).toEqual({ attempts: 4, issued: 1, s2: 0 });

    // A status recorded on the hour's first row marks the hour stale: read from the log up to the watermark (and from
    // the watermark on, as before) until the next compaction rebuilds it up to its new watermark.
    await recordResponseStatus(
      { orm: server.db.orm, pool: server.db.pool, tenant: null, refusalLog: server.services.refusalLog },
      { redemptionId: logged[0].id, statusCode: 204, releaseUse: false },
    );
    expect(await server.sql('select hour from usage_rollup_stale')).toEqual([{ hour: new Date(hour) }]);
    await expectExact(10, range);
    expect(await compactTo(hour + 50 * MINUTE)).toMatchObject({ minutes: 18, rebuilt: 1 });
    expect(await rolledUp()).toEqual({ attempts: 5, issued: 1, s2: 1 });
    await expectExact(10, range);

    // Past the hour's end: the rest of it is added, and the next hour starts from nothing.
    await compactTo(hour + HOUR + 10 * MINUTE);
    expect(await rolledUp()).toEqual({ attempts: 6, issued: 1, s2: 1 });
    await expectDays();
    await expectExact(10, range);
  });

  it('miss a row written behind their back (no stale mark) until the range is rebuilt', async () => {
    await reset();
    const [token] = await server.sql(`insert into request_token (client_id, scope, max_uses, issued_at)
      values (1, 'newsletter', 5, now() - interval '3 hours') returning id`);
    await compactRollups(pool());
    const at = new Date(Date.now() - 3 * HOUR);
    await server.sql(`insert into request_token_log (token_id, client_id, timestamp) values ($1, 1, $2)`, [token.id, at]);
    const window = { since: new Date(at.getTime() - 2 * HOUR), until: new Date() };
    const deps = { pool: pool(), tenant: null };
    const fromRollups = await usageStats(deps, window, 'HOUR');
    const fromScan = await usageStats(deps, window, 'HOUR', new Date(), usageStatsScanQuery);
    expect(fromScan.totals.redemptions).toBe(1);
    expect(fromRollups.totals.redemptions).toBe(0);

    const rebuilt = await rebuildRollups(pool(), { since: new Date(at.getTime() - 1), until: new Date(at.getTime() + 1) });
    expect(rebuilt).toMatchObject({ marked: 1, rebuilt: 1 });
    expect((await usageStats(deps, window, 'HOUR')).totals.redemptions).toBe(1);
  });

  it('wait, when compacting, for every transaction that began before the seal', async () => {
    await reset();
    const [token] = await server.sql(`insert into request_token (client_id, scope, max_uses) values (1, 'login', 5) returning id`);
    // A redemption whose transaction began now and commits only after the compaction sealed the current hour (the
    // tests' negative lag seals up to the next hour boundary): its row is stamped before the new watermark.
    const late = new pg.Client({ connectionString: server.databaseUrl });
    await late.connect();
    let second: unknown;
    let done: Awaited<ReturnType<typeof compactRollups>>;
    try {
      await late.query('begin');
      await late.query(`insert into request_token_log (token_id, client_id) values ($1, 1)`, [token.id]);
      const compaction = compactRollups(pool(), { lagMs: -HOUR, maxWaitMs: 30_000 });
      await new Promise((resolve) => setTimeout(resolve, 300));
      // Meanwhile another instance's compaction skips: one runs at a time.
      second = await compactRollups(pool(), { lagMs: -HOUR });
      await late.query('commit');
      done = await compaction;
    } finally {
      await late.end();
    }
    const stats = await usageStats({ pool: pool(), tenant: '1' }, { since: new Date(Date.now() - 2 * HOUR), until: new Date(Date.now() + HOUR) }, 'HOUR');
    expect(stats.totals).toMatchObject({ issued: 1, redemptions: 1 });
    await expectExact(10);
    expect(second).toMatchObject({ skipped: true });
    expect(done).toMatchObject({ skipped: false, waitedOut: false });
    const sealed = Math.floor((Date.now() + HOUR) / MINUTE) * MINUTE;
    expect([sealed, sealed - MINUTE]).toContain(done.compactedUntil!.getTime());
    await reset();
  });

  it('give up waiting after maxWaitMs, leaving the watermark where it was', async () => {
    await reset();
    const open = new pg.Client({ connectionString: server.databaseUrl });
    await open.connect();
    try {
      await open.query('begin');
      await open.query(`insert into request_token_log (token_id, error_code) values (0, 'TOKEN_MALFORMED')`);
      expect(await compactRollups(pool(), { lagMs: -HOUR, maxWaitMs: 300 })).toMatchObject({ waitedOut: true, compactedUntil: null });
      await open.query('commit');
    } finally {
      await open.end();
    }
    await expectExact(5);
    await reset();
  });

  it("are compacted at once and on a timer by the service's compactor, which stops on close", async () => {
    await reset();
    await server.sql(`insert into request_token (client_id, scope, max_uses, issued_at) values (1, 'invite', 5, now() - interval '3 hours')`);
    const runs: unknown[] = [];
    const errors: unknown[] = [];
    const compactor = createRollupCompactor(pool(), { intervalMs: 50, onError: (m, e) => errors.push(e ?? m), onDone: (r) => runs.push(r) });
    compactor.start();
    for (let i = 0; i < 100 && runs.length < 3; i++) await new Promise((resolve) => setTimeout(resolve, 50));
    await compactor.stop();
    const stopped = runs.length;
    expect(stopped).toBeGreaterThanOrEqual(3);
    expect(errors).toEqual([]);
    const [state] = await server.sql('select compacted_until from usage_rollup_state');
    const sealed = Math.floor((Date.now() - ROLLUP_LAG_MS) / MINUTE) * MINUTE;
    expect([sealed, sealed - MINUTE]).toContain(state.compacted_until.getTime());
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(runs.length).toBe(stopped);
    await expectExact(5);
  });

  it('are compacted and rebuilt by the CLI', async () => {
    await reset();
    await server.sql(`insert into request_token (client_id, scope, max_uses, issued_at) values (1, 'invite', 5, now() - interval '1 day')`);
    const env = { DATABASE_URL: server.databaseUrl, REQUEST_TOKEN_SECRET: TEST_SECRET };
    const compacted = await runCli(['rollups', 'compact'], env);
    expect(compacted).toMatchObject({ code: 0, stderr: '' });
    expect(compacted.stdout).toMatch(/^rolled up \d+ minutes?, rebuilt 0 stale hours\ncompacted until \S+:00\.000Z\n$/);
    const rebuilt = await runCli(['rollups', 'rebuild', '--since', new Date(Date.now() - 2 * 86_400_000).toISOString()], env);
    expect(rebuilt).toMatchObject({ code: 0, stderr: '' });
    expect(rebuilt.stdout).toMatch(/^marked (\d+) hours stale\nrolled up \d+ minutes?, rebuilt \1 stale hours\n/);
    // Without a range: every hour that holds something.
    const everything = await runCli(['rollups', 'rebuild'], env);
    expect(everything).toMatchObject({ code: 0, stderr: '' });
    expect(everything.stdout).toMatch(/^marked (\d+) hours stale\nrolled up \d+ minutes?, rebuilt \1 stale hours\n/);
    expect(await runCli(['rollups', 'rebuild', '--since', 'yesterday'], env)).toMatchObject({ code: 2 });
    await expectExact(5);
  });
});
