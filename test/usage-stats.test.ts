import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { usageStats } from '../server/domain/usage-stats.js';
import { ensureLogPartitions } from '../server/domain/log-partitions.js';
import { startTestServer, type TestServer } from './support/harness.js';

let server: TestServer;

const STATS = /* GraphQL */ `
  fragment Counts on UsageCounts {
    issued
    redemptions
    released
    refusals
    refusalsByCode { code count }
    responseStatuses { status1xx status2xx status3xx status4xx status5xx unrecorded }
  }
  query Stats($filter: UsageStatsFilter, $bucket: StatsBucket!) {
    usageStats(filter: $filter, bucket: $bucket) {
      bucket
      timeZone
      since
      until
      buckets { start end ...Counts }
      totals { ...Counts }
      scopes { scope ...Counts }
    }
  }
`;

const statuses = (s: Partial<Record<string, number>> = {}) => ({
  status1xx: 0, status2xx: 0, status3xx: 0, status4xx: 0, status5xx: 0, unrecorded: 0, ...s,
});
const counts = (c: { issued?: number; redemptions?: number; released?: number; refusals?: number; byCode?: [string, number][]; statuses?: Record<string, number> }) => ({
  issued: c.issued ?? 0,
  redemptions: c.redemptions ?? 0,
  released: c.released ?? 0,
  refusals: c.refusals ?? 0,
  refusalsByCode: (c.byCode ?? []).map(([code, count]) => ({ code, count })),
  responseStatuses: statuses(c.statuses),
});

// Tokens and log rows with explicit timestamps across four UTC days and three scopes, plus rows just outside the
// window on both sides and one refusal that could not be tied to a token.
beforeAll(async () => {
  server = await startTestServer();
  await ensureLogPartitions(server.db.pool, { from: new Date('2026-02-01T00:00:00Z'), to: new Date('2026-03-31T00:00:00Z') });
  const token = async (scope: string, issuedAt: string) => {
    const [row] = await server.sql(
      `insert into request_token (client_id, scope, max_uses, issued_at) values (1, $1, 5, $2) returning id`,
      [scope, issuedAt],
    );
    return String(row.id);
  };
  const t1 = await token('newsletter', '2026-03-01T08:15:00Z');
  const t2 = await token('newsletter', '2026-03-01T23:59:59Z');
  const t3 = await token('login', '2026-03-02T00:00:00Z');
  const t4 = await token('login', '2026-03-03T12:00:00Z');
  const t5 = await token('invite', '2026-02-28T23:00:00Z');
  const log = (tokenId: string | null, at: string, errorCode: string | null, statusCode: number | null, releasedAt: string | null = null) =>
    server.sql(
      `insert into request_token_log (token_id, error_code, status_code, timestamp, released_at) values ($1, $2, $3, $4, $5)`,
      [tokenId ?? 0, errorCode, statusCode, at, releasedAt],
    );
  await log(t1, '2026-03-01T09:00:00Z', null, 302);
  await log(t1, '2026-03-01T09:30:00Z', null, 200);
  await log(t1, '2026-03-02T10:00:00Z', 'MAX_USES_EXCEEDED', 410);
  await log(t3, '2026-03-02T00:30:00Z', null, null, '2026-03-02T00:30:01Z'); // its use was given back
  await log(t3, '2026-03-02T01:00:00Z', 'SCOPE_MISMATCH', 403);
  await log(t4, '2026-03-03T13:00:00Z', 'TOKEN_EXPIRED', 500);
  await log(t4, '2026-03-03T14:00:00Z', 'TOKEN_EXPIRED', null);
  await log(null, '2026-03-03T15:00:00Z', 'TOKEN_SIGNATURE_INVALID', null);
  await log(t5, '2026-03-04T00:00:00Z', null, 200); // at `until`: excluded
  await log(t2, '2026-02-28T23:59:59.999Z', null, 200); // before `since`: excluded
});
afterAll(() => server?.close());

const WINDOW = { since: '2026-03-01T00:00:00.000Z', until: '2026-03-04T00:00:00.000Z' };

describe('usageStats', () => {
  it('counts issues, redemptions, refusals by code and status classes per UTC day', async () => {
    const res = await server.gql(STATS, { filter: WINDOW, bucket: 'DAY' });
    expect(res.errors).toBeUndefined();
    const stats = res.data.usageStats;
    expect(stats).toMatchObject({ bucket: 'DAY', timeZone: 'UTC', ...WINDOW });
    expect(stats.buckets).toEqual([
      {
        start: '2026-03-01T00:00:00.000Z',
        end: '2026-03-02T00:00:00.000Z',
        ...counts({ issued: 2, redemptions: 2, statuses: { status2xx: 1, status3xx: 1 } }),
      },
      {
        start: '2026-03-02T00:00:00.000Z',
        end: '2026-03-03T00:00:00.000Z',
        ...counts({
          issued: 1,
          redemptions: 1,
          released: 1,
          refusals: 2,
          byCode: [['SCOPE_MISMATCH', 1], ['MAX_USES_EXCEEDED', 1]],
          statuses: { status4xx: 2, unrecorded: 1 },
        }),
      },
      {
        start: '2026-03-03T00:00:00.000Z',
        end: '2026-03-04T00:00:00.000Z',
        ...counts({
          issued: 1,
          refusals: 3,
          byCode: [['TOKEN_EXPIRED', 2], ['TOKEN_SIGNATURE_INVALID', 1]],
          statuses: { status5xx: 1, unrecorded: 2 },
        }),
      },
    ]);
    expect(stats.totals).toEqual(
      counts({
        issued: 4,
        redemptions: 3,
        released: 1,
        refusals: 5,
        byCode: [['TOKEN_EXPIRED', 2], ['TOKEN_SIGNATURE_INVALID', 1], ['SCOPE_MISMATCH', 1], ['MAX_USES_EXCEEDED', 1]],
        statuses: { status2xx: 1, status3xx: 1, status4xx: 2, status5xx: 1, unrecorded: 3 },
      }),
    );
    expect(stats.scopes).toEqual([
      {
        scope: 'login',
        ...counts({
          issued: 2,
          redemptions: 1,
          released: 1,
          refusals: 3,
          byCode: [['TOKEN_EXPIRED', 2], ['SCOPE_MISMATCH', 1]],
          statuses: { status4xx: 1, status5xx: 1, unrecorded: 2 },
        }),
      },
      {
        scope: 'newsletter',
        ...counts({
          issued: 2,
          redemptions: 2,
          refusals: 1,
          byCode: [['MAX_USES_EXCEEDED', 1]],
          statuses: { status2xx: 1, status3xx: 1, status4xx: 1 },
        }),
      },
      { scope: null, ...counts({ refusals: 1, byCode: [['TOKEN_SIGNATURE_INVALID', 1]], statuses: { unrecorded: 1 } }) },
    ]);
  });

  it('narrows to one scope, leaving out refusals that no token could be tied to', async () => {
    const res = await server.gql(STATS, { filter: { ...WINDOW, scope: 'login' }, bucket: 'DAY' });
    const stats = res.data.usageStats;
    expect(stats.buckets.map((b: any) => [b.issued, b.redemptions, b.refusals])).toEqual([
      [0, 0, 0],
      [1, 1, 1],
      [1, 0, 2],
    ]);
    expect(stats.scopes.map((s: any) => s.scope)).toEqual(['login']);
    expect(stats.totals).toMatchObject({ issued: 2, redemptions: 1, refusals: 3 });
  });

  it('cuts hours, includes empty buckets and treats since as inclusive', async () => {
    const res = await server.gql(STATS, {
      filter: { since: '2026-03-02T00:00:00Z', until: '2026-03-02T03:00:00Z' },
      bucket: 'HOUR',
    });
    expect(
      res.data.usageStats.buckets.map((b: any) => [b.start, b.issued, b.redemptions, b.refusalsByCode]),
    ).toEqual([
      ['2026-03-02T00:00:00.000Z', 1, 1, []],
      ['2026-03-02T01:00:00.000Z', 0, 0, [{ code: 'SCOPE_MISMATCH', count: 1 }]],
      ['2026-03-02T02:00:00.000Z', 0, 0, []],
    ]);
  });

  it('clips the first and last buckets to the window', async () => {
    const res = await server.gql(STATS, {
      filter: { since: '2026-03-01T09:15:00Z', until: '2026-03-02T00:45:00Z' },
      bucket: 'DAY',
    });
    expect(res.data.usageStats.buckets.map((b: any) => [b.start, b.issued, b.redemptions])).toEqual([
      ['2026-03-01T00:00:00.000Z', 1, 1],
      ['2026-03-02T00:00:00.000Z', 1, 1],
    ]);
  });

  it('cuts days at UTC midnight whatever the database session time zone', async () => {
    const tokyo = new pg.Pool({ connectionString: server.databaseUrl, max: 1, options: '-c timezone=Asia/Tokyo' });
    try {
      const { rows } = await tokyo.query('show timezone');
      expect(rows[0].TimeZone).toBe('Asia/Tokyo');
      const stats = await usageStats({ pool: tokyo, tenant: null }, { since: new Date(WINDOW.since), until: new Date(WINDOW.until) }, 'DAY');
      expect(stats.buckets.map((b) => [b.start.toISOString(), b.issued, b.redemptions, b.refusals])).toEqual([
        ['2026-03-01T00:00:00.000Z', 2, 2, 0],
        ['2026-03-02T00:00:00.000Z', 1, 1, 2],
        ['2026-03-03T00:00:00.000Z', 1, 0, 3],
      ]);
    } finally {
      await tokyo.end();
    }
  });

  it('defaults to the last 30 days by the day, the current day included', async () => {
    const before = Date.now();
    const res = await server.gql(STATS, { bucket: 'DAY' });
    const { buckets, since, until } = res.data.usageStats;
    expect(buckets).toHaveLength(30);
    expect(new Date(until).getTime()).toBeGreaterThanOrEqual(before);
    expect(since).toBe(buckets[0].start);
    expect(since.endsWith('T00:00:00.000Z')).toBe(true);
    expect(new Date(buckets[29].end).getTime()).toBeGreaterThan(new Date(until).getTime() - 1);
  });

  it('refuses an empty window or one with too many buckets', async () => {
    for (const [filter, bucket, path] of [
      [{ since: WINDOW.until, until: WINDOW.since }, 'DAY', 'filter.until'],
      [{ since: '2026-01-01T00:00:00Z', until: '2026-03-01T00:00:00Z' }, 'HOUR', 'filter.since'],
    ] as const) {
      const res = await server.gql(STATS, { filter, bucket });
      expect(res.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
      expect((res.errors![0].extensions!.issues as any[])[0].path.join('.')).toBe(path);
    }
  });
});
