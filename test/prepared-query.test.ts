import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryPrepared } from '../server/database/prepared-query.js';
import { createTestDatabase } from './support/harness.js';

// The hot path's named statements are described once per connection (server/database/prepared-query.ts): the first
// execution on a connection asks for the row description, the next ones send Bind, Execute and Sync only and decode
// rows with what the first one told. Checked on a real PostgreSQL, counting the Describe messages the real pg
// connection sends, and against pg's own Query on the same statements.
let url: string;
let client: pg.Client;
let describes = 0;

const SELECT = {
  name: 'described-once-probe',
  text: `select $1::bigint as id, $2::int as n, $3::jsonb as data, $4::timestamptz as at, null::text as nothing,
    array[$2::int, 2] as ints`,
};
const row = (i: number) => [String(9_007_199_254_740_993n + BigInt(i)), i, JSON.stringify({ i }), new Date(Date.UTC(2026, 0, 1 + i))];

const connect = async () => {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const connection = (c as unknown as { connection: { describe(message: unknown): void } }).connection;
  const describe = connection.describe.bind(connection);
  connection.describe = (message) => {
    describes++;
    describe(message);
  };
  return c;
};

beforeAll(async () => {
  url = await createTestDatabase({ plain: true });
  client = await connect();
  await client.query('create table if not exists probe_shape (id int primary key, label text)');
});
afterAll(async () => {
  await client?.end();
});

describe('queryPrepared', () => {
  it('describes a statement once per connection and decodes every later row as pg does', async () => {
    describes = 0;
    for (let i = 0; i < 5; i++) {
      const ours = await queryPrepared(client, { ...SELECT, values: row(i) });
      const theirs = await client.query({ text: SELECT.text, values: row(i) });
      expect(ours.rows).toEqual(theirs.rows);
      expect(ours.rows[0]).toEqual({
        id: String(9_007_199_254_740_993n + BigInt(i)),
        n: i,
        data: { i },
        at: new Date(Date.UTC(2026, 0, 1 + i)),
        nothing: null,
        ints: [i, 2],
      });
      expect(ours.fields.map((f) => f.name)).toEqual(['id', 'n', 'data', 'at', 'nothing', 'ints']);
    }
    // One for the first queryPrepared, one for each of pg's own (unnamed) queries.
    expect(describes).toBe(1 + 5);

    const other = await connect();
    try {
      describes = 0;
      for (let i = 0; i < 3; i++) expect((await queryPrepared(other, { ...SELECT, values: row(i) })).rows[0].n).toBe(i);
      expect(describes).toBe(1);
    } finally {
      await other.end();
    }
  });

  it('answers a statement error as pg does, and runs the statement again after it', async () => {
    const failing = { name: 'described-once-cast', text: 'select $1::int as n, now() as at' };
    expect((await queryPrepared(client, { ...failing, values: [1] })).rows[0].n).toBe(1);
    await expect(queryPrepared(client, { ...failing, values: ['not a number'] })).rejects.toMatchObject({ code: '22P02' });
    const again = await queryPrepared(client, { ...failing, values: [2] });
    expect(again.rows[0].n).toBe(2);
    expect(again.rows[0].at).toBeInstanceOf(Date);
  });

  it('returns no rows as an empty result with the columns, and fails a changed result type rather than misreading it', async () => {
    await client.query('insert into probe_shape values (1, $1) on conflict do nothing', ['one']);
    const statement = { name: 'described-once-shape', text: 'select * from probe_shape where id = $1' };
    expect((await queryPrepared(client, { ...statement, values: [1] })).rows).toEqual([{ id: 1, label: 'one' }]);
    const none = await queryPrepared(client, { ...statement, values: [2] });
    expect(none.rows).toEqual([]);
    expect(none.fields.map((f) => f.name)).toEqual(['id', 'label']);
    // PostgreSQL refuses a prepared statement whose result columns changed; the old description is never applied.
    await client.query('alter table probe_shape alter column label type int using length(label)');
    await expect(queryPrepared(client, { ...statement, values: [1] })).rejects.toThrow(/cached plan must not change result type/);
  });
});
