import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { truncateLogs } from '../../server/domain/log-retention.js';
import { compactRollups, markStaleTimes } from '../../server/domain/usage-rollups.js';
import { startTestServer, type TestServer } from '../support/harness.js';
import { issue, RECORD, redeem } from '../support/operations.js';

// The log's upkeep on a Citus cluster: the usage rollups' compaction (plain tables on the coordinator, rolled up from
// the distributed log and tokens) and retention by months. Runs only through `npm run test:citus`.
const citus = inject('citus');

let server: TestServer;

beforeAll(async () => {
  if (!citus) return;
  server = await startTestServer();
});

afterAll(async () => {
  await server?.close();
});

describe.runIf(citus)('the log\'s upkeep on Citus', () => {
  it('compacts the distributed log and tokens into the rollups, and the totals agree with a count', async () => {
    const redemptions: string[] = [];
    for (let i = 0; i < 12; i++) {
      const { jwt } = await issue(server, { scope: i % 3 ? 'news' : 'rsvp', maxUses: 2 });
      for (let use = 0; use <= i % 4; use++) {
        const answer = await redeem(server, { jwt, scope: i % 3 ? 'news' : 'rsvp' });
        if (answer.__typename === 'Redemption') redemptions.push(answer.id);
      }
    }
    // Every hour up to the next one is sealed: everything written so far is rolled up.
    const result = await compactRollups(server.db.pool, { lagMs: -3_600_000, maxWaitMs: 5_000 });
    expect(result).toMatchObject({ skipped: false, waitedOut: false });
    expect(result.compactedUntil).not.toBeNull();

    const [rolled] = await server.sql<{ attempts: number; issued: number }>(
      'select coalesce(sum(attempts), 0)::int as attempts, coalesce(sum(issued), 0)::int as issued from usage_rollup',
    );
    const [counted] = await server.sql<{ attempts: number; issued: number }>(
      `select (select count(*)::int from request_token_log) as attempts, (select count(*)::int from request_token) as issued`,
    );
    expect(rolled).toEqual(counted);
    expect(counted.attempts).toBeGreaterThan(12);

    const listed = await server.gql(`{ requestTokenLogs(first: 1) { totalCount } failed: requestTokenLogs(first: 1, filter: { failed: true }) { totalCount } }`);
    const [failed] = await server.sql<{ n: number }>('select count(*)::int as n from request_token_log where error_code is not null');
    expect(listed.data).toEqual({ requestTokenLogs: { totalCount: counted.attempts }, failed: { totalCount: failed.n } });

    // A status recorded after its hour was rolled up marks the hour stale; the next compaction rebuilds it.
    const recorded = await server.gql(RECORD, { input: { redemptionId: redemptions[0], statusCode: 204 } });
    expect(recorded.data.recordResponseStatus.__typename).toBe('RecordResponseStatusSuccess');
    expect(await server.sql('select count(*)::int as n from usage_rollup_stale')).toEqual([{ n: 1 }]);
    const again = await compactRollups(server.db.pool, { lagMs: -3_600_000, maxWaitMs: 5_000 });
    expect(again.rebuilt).toBe(1);
    expect(await server.sql('select coalesce(sum(status_2xx), 0)::int as n from usage_rollup')).toEqual([{ n: 1 }]);
  });

  it('retention drops a past month whole and cuts through the rest, its drop beside the cut-through', async () => {
    const day = 86_400_000;
    const now = Date.now();
    // Rows of the month two months back (dropped whole), and rows around the cut-off (cut through).
    const old = new Date(now - 70 * day);
    const times = [old, new Date(old.getTime() + 1000), new Date(now - 3 * day), new Date(now - 2 * 3_600_000)];
    for (const at of times) {
      await server.sql(`insert into request_token_log (token_id, client_id, error_code, timestamp) values (0, 1, 'INVALID_SIGNATURE', $1)`, [at]);
    }
    // Written behind the service's back into hours the first case rolled up: marked, as such a writer must.
    await markStaleTimes(server.db.pool, times);
    const before = (await server.sql<{ n: number }>('select count(*)::int as n from request_token_log'))[0].n;
    const doomed = (await server.sql<{ n: number }>(`select count(*)::int as n from request_token_log where timestamp < now() - interval '1 day'`))[0].n;
    expect(doomed).toBeGreaterThanOrEqual(3);
    const result = await truncateLogs(server.db.pool, { maxDays: 1 });
    expect(result.count).toBe(doomed);
    expect((await server.sql<{ n: number }>('select count(*)::int as n from request_token_log'))[0].n).toBe(before - doomed);
    expect(await server.sql(`select relname from pg_class where relname like 'request_token_log%retired'`)).toEqual([]);
  });

  it('adds each compaction\'s rows to the hour the watermark stopped in, and the totals agree with a count', async () => {
    // From nothing rolled up, rows by hand at minutes of an hour three hours back (no seal covers them yet).
    await server.sql('truncate usage_rollup, usage_rollup_day, usage_rollup_stale');
    await server.sql('update usage_rollup_state set sealed_until = null, compacted_until = null where id = 1');
    const hour = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3 * 3_600_000;
    const times = [5, 25, 45].map((m) => new Date(hour + m * 60_000));
    await server.sql(
      `insert into request_token_log (token_id, client_id, error_code, timestamp) select 0, 1, 'TOKEN_MALFORMED', t from unnest($1::timestamptz[]) t`,
      [times],
    );
    const rolledUp = async () =>
      (await server.sql<{ n: number }>('select coalesce(sum(attempts), 0)::int as n from usage_rollup where hour = $1', [new Date(hour)]))[0].n;
    for (const [minute, expected] of [[15, 1], [30, 2], [50, 3]]) {
      const result = await compactRollups(server.db.pool, { lagMs: Date.now() - (hour + minute * 60_000), maxWaitMs: 5_000 });
      expect(result.compactedUntil).toEqual(new Date(hour + minute * 60_000));
      expect(await rolledUp()).toBe(expected);
    }
    const [rolled] = await server.sql<{ n: number }>('select coalesce(sum(attempts), 0)::int as n from usage_rollup');
    const [counted] = await server.sql<{ n: number }>(
      `select count(*)::int as n from request_token_log where timestamp < (select compacted_until from usage_rollup_state)`,
    );
    expect(rolled).toEqual(counted);
  });
});
