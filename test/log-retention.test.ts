import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { ensureLogPartitions, listLogPartitions, monthStart, partitionName } from '../server/domain/log-partitions.js';
import { truncateLogs, type RemovedSpan } from '../server/domain/log-retention.js';
import { markStaleTimes, rebuildRollups } from '../server/domain/usage-rollups.js';
import { startTestServer, type TestServer } from './support/harness.js';
import { issue, redeem } from './support/operations.js';

/**
 * Retention on the log partitioned by month: whole months dropped, the month the cut-off cuts through deleted inside,
 * counts kept exact, the current month never dropped, idempotency keys outliving their rows, and the rollups' seam.
 */

const DAY = 86_400_000;
let server: TestServer;
afterAll(() => server?.close());

let tokenId: string;
/**
 * Rows at each instant, ids ascending with time. Written behind the rollups' back, so the rollups start over (nothing
 * compacted): a test that compacts does so after seeding.
 */
async function seed(times: Date[]) {
  await server.sql('delete from request_token_log');
  await server.sql('delete from usage_rollup');
  await server.sql('delete from usage_rollup_stale');
  await server.sql('update usage_rollup_state set sealed_until = null, compacted_until = null where id = 1');
  await ensureLogPartitions(server.db.pool, { from: times[0], to: new Date() });
  await server.sql(
    `insert into request_token_log (token_id, timestamp, client_id) select $1, t, 1 from unnest($2::timestamptz[]) t order by t`,
    [tokenId, times],
  );
}
/**
 * Two rows: one in the month two months back, one now. maxDays 1 drops that month whole, and the empty month after it
 * as well unless the cut-off (a day ago) falls inside it, as it does on a month's first day: `droppedWhole` lists them.
 */
async function seedOldMonth() {
  const now = Date.now();
  const old = monthStart(new Date(now), -2);
  await seed([new Date(old.getTime() + DAY), new Date(now - 1000)]);
  const droppedWhole: Date[] = [];
  for (let month = old; monthStart(month, 1).getTime() <= now - DAY; month = monthStart(month, 1)) droppedWhole.push(month);
  return { now, old, droppedWhole };
}
const retiredNames = (months: Date[]) => months.map((month) => ({ name: `${partitionName(month)}_retired` }));
/** The test server's pool, with each DROP TABLE run only once `before()` resolves (and not if it rejects). */
const dropsThrough = (before: () => Promise<void>) => {
  const pool = server.db.pool;
  return {
    connect: () => pool.connect(),
    query: async (text: string, values?: unknown[]) => {
      if (/^drop table/.test(text)) await before();
      return pool.query(text, values);
    },
  } as unknown as typeof pool;
};
const names = async () => (await listLogPartitions(server.db.pool)).map((p) => p.name);
const kept = async () =>
  (await server.sql<{ timestamp: Date }>('select timestamp from request_token_log order by id')).map((r) => r.timestamp.getTime());

beforeEach(async () => {
  server ??= await startTestServer();
  tokenId ??= (await issue(server, { scope: 'r', maxUses: 100 })).token.id;
});

describe('retention by age', () => {
  it('drops the months wholly older than the cut-off and deletes only inside the month it cuts through', async () => {
    const now = Date.now();
    const cutoff = now - 45 * DAY;
    const cutMonth = monthStart(new Date(cutoff));
    // Two rows at the start of each of the three months before the cut month, two on each side of the cut-off, one now.
    const times = [3, 2, 1].flatMap((back) => {
      const m = monthStart(cutMonth, -back).getTime();
      return [new Date(m), new Date(m + DAY)];
    });
    times.push(new Date(cutoff - 2 * 3_600_000), new Date(cutoff - 3_600_000), new Date(cutoff + 3_600_000), new Date(cutoff + 7_200_000), new Date(now));
    await seed(times);
    const steps: RemovedSpan[] = [];
    const result = await truncateLogs(server.db.pool, { maxDays: 45, batchSize: 1 }, { onRemoved: async (_c, s) => void steps.push(s) });

    expect(result.count).toBe(8);
    expect(steps.map((s) => [s.droppedPartition, s.count])).toEqual([
      [partitionName(monthStart(cutMonth, -3)), 2],
      [partitionName(monthStart(cutMonth, -2)), 2],
      [partitionName(monthStart(cutMonth, -1)), 2],
      [null, 1],
      [null, 1],
    ]);
    const all = await names();
    for (const back of [3, 2, 1]) expect(all).not.toContain(partitionName(monthStart(cutMonth, -back)));
    expect(all).toContain(partitionName(cutMonth));
    // The months' tables are dropped by the time the call returns (the drops run beside the cut-through).
    expect(await server.sql(`select relname from pg_class where relname like 'request_token_log%retired'`)).toEqual([]);
    expect(await kept()).toEqual(times.slice(8).map((t) => t.getTime()));
    // Each step's span holds its rows: what a rollup of those hours must take out.
    expect(steps[0].oldest?.getTime()).toBe(times[0].getTime());
    expect(steps[0].newest?.getTime()).toBe(times[1].getTime());
    expect(result).toMatchObject({ oldest: times[0], newest: times[7] });
  });

  it('never drops the current month, even when every row goes (all), and the log takes rows after it', async () => {
    const now = Date.now();
    await seed([new Date(monthStart(new Date(now), -1).getTime() + DAY), new Date(now - 1000)]);
    const result = await truncateLogs(server.db.pool, { all: true });
    expect(result.count).toBe(2);
    const all = await names();
    expect(all).toContain(partitionName(monthStart(new Date(now))));
    expect(all).toContain(partitionName(monthStart(new Date(now), 1)));
    expect(all).not.toContain(partitionName(monthStart(new Date(now), -1)));
    await redeem(server, { jwt: (await issue(server, { scope: 'r' })).jwt, scope: 'r' });
    expect((await kept()).length).toBe(1);
  });
});

describe('inside the month the cut-off cuts through', () => {
  it('deletes in batches along the time index, rows sharing a time in one batch, and counts each row once', async () => {
    const now = Date.now();
    const cutoff = now - 2 * DAY;
    const at = new Date(cutoff - 3_600_000);
    // Five rows at one instant, two earlier, one after the cut-off (all in this month or the last).
    const times = [new Date(cutoff - 3 * 3_600_000), new Date(cutoff - 2 * 3_600_000), at, at, at, at, at, new Date(cutoff + 60_000)];
    await seed(times);
    const batches: RemovedSpan[] = [];
    // On one connection: the pass whole, its batches in order (two would split it at its midpoint in time).
    const onBatch = (b: RemovedSpan) => void batches.push(b);
    const result = await truncateLogs(server.db.pool, { maxDays: 2, batchSize: 3 }, { onBatch, connections: 1 });
    expect(result.count).toBe(7);
    expect(batches.reduce((n, b) => n + b.count, 0)).toBe(7);
    // The third row's time is the first batch's bound: the rows at that instant go with it, whatever the size.
    expect(batches.map((b) => b.count)).toEqual([7]);
    expect(await kept()).toEqual([times[7].getTime()]);
  });

  it('bounds batches to the microsecond: rows a few microseconds apart, in batches of two, all go', async () => {
    await seed([new Date(Date.now() - 1000)]);
    await server.sql(
      `insert into request_token_log (token_id, timestamp, client_id)
       select $1, date_trunc('second', now() - interval '3 days') + i * interval '7 microseconds', 1 from generate_series(1, 9) i`,
      [tokenId],
    );
    const result = await truncateLogs(server.db.pool, { maxDays: 2, batchSize: 2 });
    expect(result.count).toBe(9);
    expect((await kept()).length).toBe(1);
  });

  it('takes the rows doomed by either cut-off, by time or by count, each once', async () => {
    const now = Date.now();
    // Ids ascending with time, then two older rows written last (an import): the count limit reaches the first three
    // ids, the time limit the two old rows (ids 6 and 7) and the first two.
    const times = [now - 5 * DAY, now - 4 * DAY, now - 3 * 3_600_000, now - 2 * 3_600_000, now - 3_600_000].map((t) => new Date(t));
    await seed(times);
    const old = [new Date(now - 6 * DAY), new Date(now - 7 * DAY)];
    await ensureLogPartitions(server.db.pool, { from: old[1], to: old[1] });
    await server.sql(`insert into request_token_log (token_id, timestamp, client_id) select $1, t, 1 from unnest($2::timestamptz[]) t`, [tokenId, old]);
    const result = await truncateLogs(server.db.pool, { maxCount: 4, maxDays: 3, batchSize: 2 });
    expect(result.count).toBe(5);
    expect(await kept()).toEqual([times[3].getTime(), times[4].getTime()]);
  });
});

describe('a cut-through on two connections', () => {
  it('splits the pass at its midpoint: both halves at once, each row once, each batch in its own transaction', async () => {
    const now = Date.now();
    // 21 rows a second apart this month: maxCount 1 dooms the first 20 ids, split at the midpoint of their ids.
    const times = Array.from({ length: 21 }, (_, i) => new Date(now - 30_000 + i * 1000));
    await seed(times);
    const [{ first }] = await server.sql<{ first: string }>('select min(id)::text as first from request_token_log');
    const id = (k: number) => String(BigInt(first) + BigInt(k));
    const batches: RemovedSpan[] = [];
    const clients = new Set<number>();
    let inFlight = 0;
    let mostInFlight = 0;
    let release: () => void = () => {};
    const together = new Promise<void>((resolve) => (release = resolve));
    const result = await truncateLogs(server.db.pool, { maxCount: 1, batchSize: 3 }, {
      async onRemoved(client, span) {
        // Inside the batch's transaction: its rows are gone there, not yet for others.
        const within = 'select count(*)::int as n from request_token_log where id between $1 and $2';
        const [{ n }] = (await client.query(within, [span.firstId, span.lastId])).rows;
        expect(n).toBe(0);
        clients.add((client as unknown as { processID: number }).processID);
        mostInFlight = Math.max(mostInFlight, ++inFlight);
        // The first batch of each half waits for the other half's first batch (2 s at most): they run at once.
        if (inFlight === 2) release();
        if (batches.length === 0) await Promise.race([together, new Promise((r) => setTimeout(r, 2000))]);
        inFlight--;
      },
      onBatch: (b) => void batches.push(b),
    });
    expect(mostInFlight).toBe(2);
    expect(clients.size).toBe(2);
    expect(result.count).toBe(20);
    expect(await kept()).toEqual([times[20].getTime()]);
    // The batches cover ids first … first+19 exactly once; the midpoint (first+9) ends the first half.
    const spans = batches
      .map((b) => [BigInt(b.firstId!), BigInt(b.lastId!), b.count] as const)
      .sort((a, b) => (a[0] < b[0] ? -1 : 1));
    expect(spans.reduce((n, s) => n + s[2], 0)).toBe(20);
    for (let i = 1; i < spans.length; i++) expect(spans[i][0]).toBe(spans[i - 1][1] + 1n);
    expect(String(spans[0][0])).toBe(id(0));
    expect(String(spans.at(-1)![1])).toBe(id(19));
    expect(spans.map((s) => String(s[1]))).toContain(id(9));
  });

  it('runs one pass on one connection when asked (connections: 1), in order', async () => {
    const now = Date.now();
    await seed(Array.from({ length: 7 }, (_, i) => new Date(now - 30_000 + i * 1000)));
    const batches: RemovedSpan[] = [];
    await truncateLogs(server.db.pool, { maxCount: 1, batchSize: 2 }, { onBatch: (b) => void batches.push(b), connections: 1 });
    expect(batches.map((b) => b.count)).toEqual([2, 2, 2]);
    expect(batches.map((b) => b.oldest!.getTime())).toEqual([now - 30_000, now - 28_000, now - 26_000]);
  });
});

describe('the count of a month dropped whole', () => {
  it('is exact from the rollups: whole hours rolled up, stale hours and those past the watermark read from the month', async () => {
    const now = Date.now();
    const month = monthStart(new Date(now), -2);
    const hour = (h: number, minute = 0) => new Date(month.getTime() + DAY + h * 3_600_000 + minute * 60_000);
    // Three rows in each of six hours of the month two back, one row now.
    const times = [0, 1, 2, 3, 4, 5].flatMap((h) => [hour(h, 1), hour(h, 20), hour(h, 40)]);
    await seed([...times, new Date(now - 1000)]);
    await rebuildRollups(server.db.pool, {}, { lagMs: 0 });
    // Rows written later into hours 1 and 3, the way the service's writers do it: their hours marked stale with them.
    const client = await server.db.pool.connect();
    try {
      await client.query('begin');
      const late = [hour(1, 50), hour(3, 10)];
      await client.query(`insert into request_token_log (token_id, timestamp, client_id) select $1, t, 1 from unnest($2::timestamptz[]) t`, [tokenId, late]);
      await markStaleTimes(client, late);
      await client.query('commit');
    } finally {
      client.release();
    }
    // The watermark back to 3:30, inside the stale hour 3: hour 3 counts from the month up to it (3 rows), and from it
    // on (3:40, hours 4 and 5) too, whatever rollup rows those still have.
    await server.sql('update usage_rollup_state set compacted_until = $1 where id = 1', [hour(3, 30)]);
    await server.sql('update usage_rollup set attempts = attempts + 100 where hour >= $1', [hour(3)]);
    const [{ n }] = await server.sql<{ n: number }>(`select count(*)::int as n from "${partitionName(month)}"`);
    expect(n).toBe(20);

    const steps: RemovedSpan[] = [];
    const maxDays = Math.floor((now - monthStart(new Date(now), -1).getTime()) / DAY);
    const result = await truncateLogs(server.db.pool, { maxDays }, { onBatch: (b) => void steps.push(b) });
    expect(steps.map((s) => [s.droppedPartition, s.count])).toEqual([[partitionName(month), 20]]);
    expect(result).toMatchObject({ count: 20, oldest: hour(0, 1), newest: hour(5, 40) });
    expect(await names()).not.toContain(partitionName(month));
  });
});

describe('two retentions at once', () => {
  it('drop each month once between them, delete each row once, and neither fails', async () => {
    const now = Date.now();
    const times = [4, 3, 2].flatMap((back) => {
      const m = monthStart(new Date(now), -back).getTime();
      return [new Date(m + DAY), new Date(m + 2 * DAY)];
    });
    times.push(new Date(now - 1000));
    await seed(times);
    const results = await Promise.all([1, 2].map(() => truncateLogs(server.db.pool, { maxCount: 1, batchSize: 1 })));
    expect(results[0].count + results[1].count).toBe(6);
    expect(await kept()).toEqual([times[6].getTime()]);
  });
});

describe('a month detached but not dropped', () => {
  it('(retention stopped between the two) is dropped by the next retention; a table of any other name stays', async () => {
    await seed([new Date(Date.now() - 1000)]);
    await server.sql('create table request_token_log_y2001m01_retired (id bigint)');
    await server.sql('create table request_token_log_y2001m02 (id bigint)');
    await truncateLogs(server.db.pool, { maxDays: 1 });
    const tables = await server.sql<{ name: string }>(
      `select relname as name from pg_class where relname in ('request_token_log_y2001m01_retired', 'request_token_log_y2001m02')`,
    );
    expect(tables.map((t) => t.name)).toEqual(['request_token_log_y2001m02']);
    await server.sql('drop table request_token_log_y2001m02');
  });

  it('holds no lock on the log or on api_client while its files go: the month leaves the log without its foreign key', async () => {
    const { old, droppedWhole } = await seedOldMonth();
    const dropped: string[] = [];
    const pool = server.db.pool;
    const spy = {
      connect: () => pool.connect(),
      async query(text: string, values?: unknown[]) {
        if (/^drop table/.test(text)) {
          // The month is out of the log, without a foreign key, and this statement runs outside any transaction.
          const [{ keys }] = await server.sql<{ keys: number }>(
            `select count(*)::int as keys from pg_constraint where conrelid = to_regclass($1) and contype = 'f'`,
            [text.replace('drop table if exists ', '')],
          );
          const result = await pool.query(text, values);
          // Recorded once done: the call returns only after its drops have finished.
          dropped.push(`${text} (${keys} foreign keys)`);
          return result;
        }
        return pool.query(text, values);
      },
    } as unknown as typeof pool;
    expect((await truncateLogs(spy, { maxDays: 1 })).count).toBe(1);
    // The month with the row, and the empty one after it (dropped by the time limit, unless it holds the cut-off).
    expect(dropped).toEqual(droppedWhole.map((month) => `drop table if exists "${partitionName(month)}_retired" (0 foreign keys)`));
    expect(droppedWhole[0]).toEqual(old);
    expect(await names()).not.toContain(partitionName(old));
  });
});

describe('a month whose drop fails', () => {
  it('is out of the log when the call fails with the drop\'s error, and the next retention drops it', async () => {
    const { now, old, droppedWhole } = await seedOldMonth();
    const pool = server.db.pool;
    const failure = new Error('the disk said no');
    const failing = dropsThrough(() => Promise.reject(failure));
    await expect(truncateLogs(failing, { maxDays: 1 })).rejects.toBe(failure);
    expect(await names()).not.toContain(partitionName(old));
    expect(await kept()).toEqual([now - 1000]);
    const retired = `select relname as name from pg_class where relname like 'request_token_log%retired' order by 1`;
    expect(await server.sql(retired)).toEqual(retiredNames(droppedWhole));
    // Nothing left to remove: the next call only drops what the failed one left.
    expect((await truncateLogs(pool, { maxDays: 1 })).count).toBe(0);
    expect(await server.sql(retired)).toEqual([]);
  });
});

describe('a month dropped in the background (dropInBackground)', () => {
  it('the call returns once the month is out of the log, without waiting for its drop; the drop finishes after', async () => {
    const { now, old, droppedWhole } = await seedOldMonth();
    // The month's DROP waits for this gate, so that the call can be seen returning before it.
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const gated = dropsThrough(() => gate);
    let drop: Promise<void> | undefined;
    let dropped = false;
    const result = await truncateLogs(gated, { maxDays: 1 }, {
      dropInBackground: (d) => void (drop = d.then(() => void (dropped = true))),
    });
    expect(result.count).toBe(1);
    expect(await names()).not.toContain(partitionName(old));
    expect(await kept()).toEqual([now - 1000]);
    expect(drop).toBeDefined();
    expect(dropped).toBe(false);
    const retired = `select relname as name from pg_class where relname like 'request_token_log%retired' order by 1`;
    expect(await server.sql(retired)).toEqual(retiredNames(droppedWhole));
    open();
    await drop;
    expect(dropped).toBe(true);
    expect(await server.sql(retired)).toEqual([]);
  });

  it('a retention meanwhile skips a month whose drop is under way (its table locked) instead of waiting for it', async () => {
    await seed([new Date(Date.now() - 1000)]);
    await server.sql('create table request_token_log_y2001m01_retired (id bigint)');
    const blocker = await server.db.pool.connect();
    try {
      await blocker.query('begin');
      await blocker.query('lock table request_token_log_y2001m01_retired in access share mode');
      // Would wait for the blocker's transaction (and time out the test) if it waited for the lock.
      expect((await truncateLogs(server.db.pool, { maxDays: 1 })).count).toBe(0);
      const left = `select relname as name from pg_class where relname = 'request_token_log_y2001m01_retired'`;
      expect(await server.sql(left)).toEqual([{ name: 'request_token_log_y2001m01_retired' }]);
      await blocker.query('rollback');
      await truncateLogs(server.db.pool, { maxDays: 1 });
      expect(await server.sql(left)).toEqual([]);
    } finally {
      await blocker.query('rollback').catch(() => {});
      blocker.release();
    }
  });

  it('through the API: the mutation answers, and the service drops the month', async () => {
    const { old } = await seedOldMonth();
    const res = await server.gql(
      `mutation { truncateRequestTokenLogs(maxDays: 1) { __typename ... on TruncateRequestTokenLogsSuccess { deletedCount } } }`,
    );
    expect(res.data.truncateRequestTokenLogs).toEqual({ __typename: 'TruncateRequestTokenLogsSuccess', deletedCount: 1 });
    expect(await names()).not.toContain(partitionName(old));
    const retired = `select relname from pg_class where relname like 'request_token_log%retired'`;
    for (let i = 0; i < 100 && (await server.sql(retired)).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await server.sql(retired)).toEqual([]);
  });
});

describe('retention by count', () => {
  it('keeps exactly the newest maxCount rows across months, dropping the months wholly beyond it', async () => {
    const now = Date.now();
    const start = monthStart(new Date(now), -3).getTime();
    // Five rows in each of the three months before this one, two this month.
    const times = [0, 1, 2].flatMap((m) => [0, 1, 2, 3, 4].map((d) => new Date(monthStart(new Date(start), m).getTime() + d * DAY)));
    times.push(new Date(now - 2000), new Date(now - 1000));
    await seed(times);
    const steps: RemovedSpan[] = [];
    const onRemoved = async (_c: unknown, s: RemovedSpan) => void steps.push(s);
    // The cut-off exactly at the oldest month's last row: that month goes whole, nothing else.
    expect((await truncateLogs(server.db.pool, { maxCount: 12 }, { onRemoved })).count).toBe(5);
    expect(steps.map((s) => [s.droppedPartition, s.count])).toEqual([[partitionName(monthStart(new Date(start))), 5]]);
    // Inside the next month: deleted there.
    steps.length = 0;
    expect((await truncateLogs(server.db.pool, { maxCount: 9 }, { onRemoved })).count).toBe(3);
    expect(steps.map((s) => [s.droppedPartition, s.count])).toEqual([[null, 3]]);
    expect(await kept()).toEqual(times.slice(8).map((t) => t.getTime()));
  });
});

describe('the rollups seam', () => {
  it('runs onRemoved inside the removal: when it fails, the month is back with its rows', async () => {
    const { old } = await seedOldMonth();
    await expect(
      truncateLogs(server.db.pool, { maxDays: 1 }, {
        async onRemoved(client) {
          await client.query('select 1');
          throw new Error('rollups could not follow');
        },
      }),
    ).rejects.toThrow('rollups could not follow');
    expect(await names()).toContain(partitionName(old));
    expect((await kept()).length).toBe(2);
  });
});

describe('idempotency keys', () => {
  it('outlive their log row: a retry after its month was dropped answers the same redemption, no second use', async () => {
    const { jwt } = await issue(server, { scope: 'k', maxUses: 3 });
    const first = await redeem(server, { jwt, scope: 'k', idempotencyKey: 'once' });
    expect(first.usesRemaining).toBe(2);
    // The redemption's row moves to three months back (an UPDATE of the partition key moves it), and that month goes:
    // it ended at least 59 days ago, before the 40 days' cut-off whatever the day of the month.
    const old = new Date(monthStart(new Date(), -3).getTime() + DAY);
    await ensureLogPartitions(server.db.pool, { from: old, to: old });
    await server.sql('update request_token_log set timestamp = $1 where id = $2', [old, first.id]);
    await server.sql('update request_token_idempotency set log_timestamp = $1 where log_id = $2', [old, first.id]);
    await truncateLogs(server.db.pool, { maxDays: 40 });
    expect(await names()).not.toContain(partitionName(monthStart(old)));
    expect(await server.sql('select 1 from request_token_log where id = $1', [first.id])).toEqual([]);
    const retry = await redeem(server, { jwt, scope: 'k', idempotencyKey: 'once' });
    expect(retry).toMatchObject({ id: first.id, usesRemaining: 2 });
  });
});
