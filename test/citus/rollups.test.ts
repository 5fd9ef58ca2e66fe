import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { compactRollups } from '../../server/domain/usage-rollups.js';
import { startTestServer, type TestServer } from '../support/harness.js';
import { issue, RECORD, redeem } from '../support/operations.js';

// The usage rollups' compaction on a Citus cluster: the rollups are plain tables on the coordinator, rolled up from the
// distributed log and tokens. Runs only through `npm run test:citus`.
const citus = inject('citus');

let server: TestServer;

beforeAll(async () => {
  if (!citus) return;
  server = await startTestServer();
});

afterAll(async () => {
  await server?.close();
});

describe.runIf(citus)('usage rollups on Citus', () => {
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
});
