import { MikroORM } from '@mikro-orm/postgresql';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ormOptions } from '../mikro-orm.config.js';
import { monthStart, partitionName } from '../server/domain/log-partitions.js';
import { createTestDatabase } from './support/harness.js';

/**
 * The migration that partitions the log, run on a database built at the migration before it and filled with data the
 * way the service wrote it: tokens of two clients, successes, refusals tied to no token (token_id null then), released
 * uses, idempotency keys, rows on both sides of a month boundary and a year back.
 */
const PARTITIONED = 'Migration20261130090000_log_partitioned_by_month';
const BEFORE = 'Migration20261130054636_signing_key_enums_as_text';

let url: string;
let orm: MikroORM;
let db: pg.Client;
const now = new Date();

interface LogRow {
  id: string;
  token_id: string | null;
  error_code: string | null;
  user_id: string | null;
  client_ip: string | null;
  user_agent: string | null;
  status_code: number | null;
  timestamp: Date;
  released_at: Date | null;
  client_id: string | null;
}
let before: LogRow[];
let keysBefore: { token_id: string; key: string; fingerprint: string; log_id: string; created_at: Date }[];

const LOG_COLUMNS = 'id, token_id, error_code, user_id, client_ip, user_agent, status_code, timestamp, released_at, client_id';

beforeAll(async () => {
  // A session time zone far from UTC: partitions are UTC months whatever the connection's zone.
  url = await createTestDatabase({ timeZone: 'Pacific/Chatham' });
  orm = await MikroORM.init({ ...ormOptions(url, 2), logger: () => {} });
  await orm.getMigrator().up({ to: BEFORE });
  db = new pg.Client({ connectionString: url });
  await db.connect();
  await db.query(`insert into api_client (id, name) values (2, 'acme')`);
  const { rows: tokens } = await db.query<{ id: string }>(
    `insert into request_token (scope, max_uses, used_to_date, client_id, issued_at)
     values ('a', 5, 3, 1, '2025-06-01Z'), ('b', 5, 2, 2, '2026-01-01Z'), ('c', 1, 1, 1, now()) returning id`,
  );
  const [a, b, c] = tokens.map((t) => t.id);
  // Timestamps: a year and more back, both sides of a month boundary (to the microsecond), now.
  await db.query(
    `insert into request_token_log (token_id, error_code, user_id, client_ip, user_agent, status_code, timestamp, released_at, client_id)
     values ($1, null, 'u1', '198.51.100.1', 'ua', 302, '2025-06-15T12:00:00Z', null, 1),
            ($1, null, 'u1', null, null, 500, '2026-01-31T23:59:59.999999Z', '2026-02-01T00:00:01Z', 1),
            ($2, null, 'u2', '203.0.113.5', 'ua2', null, '2026-02-01T00:00:00Z', null, 2),
            ($2, 'MAX_USES_EXCEEDED', 'u2', null, null, 410, '2026-02-01T00:00:00.000001Z', null, 2),
            (null, 'TOKEN_MALFORMED', null, '192.0.2.1', 'curl', null, '2026-01-15T08:00:00Z', null, null),
            (null, 'TOKEN_NOT_FOUND', null, null, null, null, now() - interval '1 minute', null, 2),
            ($3, null, null, null, null, 200, now(), null, 1),
            ($1, null, 'u1', null, null, null, '2025-06-30T23:59:59Z', null, 1)`,
    [a, b, c],
  );
  await db.query(
    `insert into request_token_idempotency (token_id, key, fingerprint, log_id, created_at)
     select token_id, 'key-' || id, repeat('f', 64), id, timestamp from request_token_log where error_code is null`,
  );
  before = (await db.query<LogRow>(`select ${LOG_COLUMNS} from request_token_log order by id`)).rows;
  keysBefore = (await db.query(`select * from request_token_idempotency order by token_id, key`)).rows;
  await orm.getMigrator().up({ to: PARTITIONED });
}, 60_000);

afterAll(async () => {
  await db?.end();
  await orm?.close(true);
});

describe('the migration that partitions the log by month', () => {
  it('moves every row across unchanged, with token id 0 where no token owned it', async () => {
    const { rows: after } = await db.query<LogRow>(`select ${LOG_COLUMNS} from request_token_log order by id`);
    expect(after).toHaveLength(8);
    expect(after).toEqual(before.map((row) => ({ ...row, token_id: row.token_id ?? '0' })));
    expect(after.filter((row) => row.token_id === '0').map((row) => row.error_code)).toEqual(['TOKEN_MALFORMED', 'TOKEN_NOT_FOUND']);
  });

  it("puts each row in its own UTC month's partition, at the boundary to the microsecond", async () => {
    const { rows } = await db.query<{ id: string; timestamp: Date; partition: string }>(
      `select id, timestamp, tableoid::regclass::text as partition from request_token_log order by id`,
    );
    for (const row of rows) expect(row.partition, `row ${row.id}`).toBe(partitionName(monthStart(row.timestamp)));
    const at = (ts: string) =>
      db.query(`select tableoid::regclass::text as p from request_token_log where timestamp = $1`, [ts]).then((r) => r.rows[0].p);
    expect(await at('2026-01-31T23:59:59.999999Z')).toBe('request_token_log_y2026m01');
    expect(await at('2026-02-01T00:00:00Z')).toBe('request_token_log_y2026m02');
  });

  it('creates every month from the oldest row through three ahead of now, and no default partition', async () => {
    const { rows } = await db.query<{ name: string; bound: string }>(
      `select c.relname as name, pg_get_expr(c.relpartbound, c.oid) as bound from pg_inherits i
       join pg_class c on c.oid = i.inhrelid where i.inhparent = 'request_token_log'::regclass order by 1`,
    );
    const expected: string[] = [];
    for (let m = new Date(Date.UTC(2025, 5, 1)); m <= monthStart(now, 3); m = monthStart(m, 1)) expected.push(partitionName(m));
    expect(rows.map((r) => r.name)).toEqual(expected);
    expect(rows.some((r) => r.bound === 'DEFAULT')).toBe(false);
  });

  it('keeps the idempotency keys, each with its log row timestamp, and the whole key finds the row', async () => {
    const { rows: keys } = await db.query(
      `select k.*, l.id as found from request_token_idempotency k
       left join request_token_log l on l.token_id = k.token_id and l.id = k.log_id and l.timestamp = k.log_timestamp
       order by k.token_id, k.key`,
    );
    expect(keys.map(({ log_timestamp: _t, found: _f, ...rest }) => rest)).toEqual(keysBefore);
    expect(keys).toHaveLength(5);
    for (const key of keys) expect(key.found).toBe(key.log_id);
  });

  it('goes on numbering from the same sequence, and a refusal with no token needs token id 0', async () => {
    const maxBefore = Math.max(...before.map((r) => Number(r.id)));
    const { rows } = await db.query(
      `insert into request_token_log (token_id, error_code) values (0, 'TOKEN_MALFORMED') returning id, pg_get_serial_sequence('request_token_log', 'id') as seq`,
    );
    expect(Number(rows[0].id)).toBeGreaterThan(maxBefore);
    expect(rows[0].seq).toBe('public.request_token_log_id_seq');
    await expect(db.query(`insert into request_token_log (error_code) values ('TOKEN_MALFORMED')`)).rejects.toThrow(/null value in column "token_id"/);
    // No foreign key to request_token: 0 names no token, and the row is kept.
    expect((await db.query(`select count(*)::int as n from request_token_log where token_id = 0`)).rows[0].n).toBe(3);
  });

  it('can be undone: the plain table comes back with the rows, token id 0 null again', async () => {
    await orm.getMigrator().down({ to: BEFORE });
    try {
      const { rows } = await db.query<LogRow>(`select ${LOG_COLUMNS} from request_token_log where id <= $1 order by id`, [
        before[before.length - 1].id,
      ]);
      expect(rows).toEqual(before);
      const { rows: kind } = await db.query(`select relkind from pg_class where relname = 'request_token_log'`);
      expect(kind[0].relkind).toBe('r');
      expect((await db.query('select count(*)::int as n from request_token_idempotency')).rows[0].n).toBe(5);
    } finally {
      await orm.getMigrator().up({ to: PARTITIONED });
    }
  });
});

describe('the partitioning migration on a log larger than the statement timeout allows one statement', () => {
  it("copies the rows although the migrator's connection carries the service's statement timeout", async () => {
    const bigUrl = await createTestDatabase();
    const big = await MikroORM.init({ ...ormOptions(bigUrl, 2), logger: () => {} });
    await big.getMigrator().up({ to: BEFORE });
    const client = new pg.Client({ connectionString: bigUrl });
    await client.connect();
    await client.query(
      `insert into request_token_log (token_id, error_code, timestamp, client_id)
       select null, 'TOKEN_MALFORMED', now() - (n % 40) * interval '1 day', null from generate_series(1, 300000) n`,
    );
    await big.close(true);
    // As server/database/db.ts connects: every session carries DB_STATEMENT_TIMEOUT_MS (here far below the copy's time).
    const timed = await MikroORM.init({
      ...ormOptions(bigUrl, 2),
      logger: () => {},
      driverOptions: { connection: { statement_timeout: 100 } },
    });
    try {
      await timed.getMigrator().up({ to: PARTITIONED });
    } finally {
      await timed.close(true);
    }
    const { rows } = await client.query(`select count(*)::int as n from request_token_log where token_id = 0`);
    await client.end();
    expect(rows[0].n).toBe(300_000);
  }, 120_000);
});
