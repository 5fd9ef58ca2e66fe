import { MikroORM } from '@mikro-orm/postgresql';
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ormOptions } from '../mikro-orm.config.js';
import { migrationsIndexText } from '../scripts/migration-create.js';
import { createTestDatabase } from './support/harness.js';

/**
 * The entities are the schema: what the migrations build and what the entities describe are one database. Otherwise
 * `npm run migration:create` (which diffs the entities against the migrated database) would write a migration that
 * drops or alters what the entities forgot.
 */

/**
 * Every table's columns, constraints and indexes as PostgreSQL itself prints them, the ORM's own table aside.
 *
 * Partitioning is the one thing the entities cannot say (server/database/entities/request-token-log.ts): the migrated
 * `request_token_log` is a partitioned table (relkind 'p') whose partitions are tables of their own, where a database
 * created from the entities has a plain table. So a partitioned parent counts as a table, its partitions (which inherit
 * its columns, keys and indexes) are left out, and its indexes print `ON ONLY` where a plain table's print `ON`: that
 * word alone is normalised. The partitioning itself is checked by the test 'partition the log by month' below.
 */
async function catalog(url: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const own = `n.nspname = 'public' and c.relname <> 'mikro_orm_migrations' and not c.relispartition`;
    const columns = await client.query(`
      select c.relname as table, a.attname as column, format_type(a.atttypid, a.atttypmod) as type, a.attnotnull as not_null,
        pg_get_expr(d.adbin, d.adrelid) as default
      from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
        left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
      where ${own} and c.relkind in ('r', 'p') and a.attnum > 0 and not a.attisdropped
      order by 1, 2`);
    const constraints = await client.query(`
      select c.relname as table, k.conname as name, pg_get_constraintdef(k.oid) as definition
      from pg_constraint k join pg_class c on c.oid = k.conrelid join pg_namespace n on n.oid = c.relnamespace
      where ${own} order by 1, 2`);
    const indexes = await client.query(`
      select c.relname as table, i.relname as name, pg_get_indexdef(i.oid) as definition
      from pg_index x join pg_class i on i.oid = x.indexrelid join pg_class c on c.oid = x.indrelid
        join pg_namespace n on n.oid = c.relnamespace
      where ${own} order by 1, 2`);
    const unpartitioned = indexes.rows.map((row) => ({ ...row, definition: row.definition.replace(/ ON ONLY /, ' ON ') }));
    return { columns: columns.rows, constraints: constraints.rows, indexes: unpartitioned };
  } finally {
    await client.end();
  }
}

describe('the entities and the migrations', () => {
  let migratedUrl: string;
  let orm: MikroORM;

  beforeAll(async () => {
    migratedUrl = await createTestDatabase();
    orm = await MikroORM.init({ ...ormOptions(migratedUrl, 2), logger: () => {} });
    await orm.getMigrator().up();
  });
  afterAll(() => orm?.close(true));

  it("leave MikroORM's schema comparison nothing to do on a migrated database", async () => {
    expect(await orm.schema.getUpdateSchemaSQL({ wrap: false })).toBe('');
  });

  it('leave the migrator no migration to generate', async () => {
    expect(await orm.getMigrator().checkMigrationNeeded()).toBe(false);
  });

  it('build the same tables, columns, defaults, constraints and indexes', async () => {
    // The comparison above matches some things by name only (expression indexes): a database created from the
    // entities alone must also print exactly like the migrated one.
    const fromEntitiesUrl = await createTestDatabase();
    const fromEntities = await MikroORM.init({ ...ormOptions(fromEntitiesUrl, 2), logger: () => {} });
    try {
      await fromEntities.schema.createSchema();
      // MikroORM 6.6.16's createSchema leaves out a composite primary key when one of its columns is autoincrement
      // (SchemaHelper.createTable: the key is assumed to come with the serial column, which holds for a key of one
      // column only). The log's key is such a key; it is added here from the entity's metadata, as the entity declares
      // it. The comparisons above (which read the key) and the catalog below (which prints it) still check it.
      for (const meta of Object.values(fromEntities.getMetadata().getAll())) {
        const pk = meta.getPrimaryProps().flatMap((prop) => prop.fieldNames);
        const serial = meta.getPrimaryProps().some((prop) => prop.autoincrement);
        if (!meta.tableName || pk.length < 2 || !serial) continue;
        await fromEntities.em.getConnection().execute(
          `alter table "${meta.tableName}" add constraint "${meta.tableName}_pkey" primary key (${pk.map((c) => `"${c}"`).join(', ')})`,
        );
      }
    } finally {
      await fromEntities.close(true);
    }
    const [migrated, created] = await Promise.all([catalog(migratedUrl), catalog(fromEntitiesUrl)]);
    expect(created.columns).toEqual(migrated.columns);
    expect(created.constraints).toEqual(migrated.constraints);
    expect(created.indexes).toEqual(migrated.indexes);
    expect(migrated.columns.map((c) => c.table)).toEqual(
      expect.arrayContaining(['request_token_idempotency', 'signing_key', 'api_client', 'api_key']),
    );
  });

  it('partition the log by month on its timestamp, each partition with every index of the parent, and nothing else', async () => {
    const client = new pg.Client({ connectionString: migratedUrl });
    await client.connect();
    try {
      const { rows: partitioned } = await client.query(`
        select c.relname as table, pg_get_partkeydef(c.oid) as key from pg_partitioned_table p join pg_class c on c.oid = p.partrelid`);
      expect(partitioned).toEqual([{ table: 'request_token_log', key: 'RANGE ("timestamp")' }]);
      const { rows: partitions } = await client.query(`
        select c.relname as name, pg_get_expr(c.relpartbound, c.oid) as bound,
          (select count(*)::int from pg_index x where x.indrelid = c.oid) as indexes
        from pg_inherits i join pg_class c on c.oid = i.inhrelid
        where i.inhparent = 'request_token_log'::regclass order by 1`);
      const { rows: [{ n: parentIndexes }] } = await client.query(
        `select count(*)::int as n from pg_index where indrelid = 'request_token_log'::regclass`);
      // The current month and three ahead at least, each one calendar month (UTC), no DEFAULT partition.
      expect(partitions.length).toBeGreaterThanOrEqual(4);
      for (const { name, bound, indexes } of partitions) {
        const [, year, month] = /^request_token_log_y(\d{4})m(\d{2})$/.exec(name) ?? [];
        const from = new Date(Date.UTC(Number(year), Number(month) - 1, 1));
        const to = new Date(Date.UTC(Number(year), Number(month), 1));
        const utc = (d: Date) => d.toISOString().replace('T', ' ').replace('.000Z', '+00');
        expect(bound, name).toBe(`FOR VALUES FROM ('${utc(from)}') TO ('${utc(to)}')`);
        expect(indexes, name).toBe(parentIndexes);
      }
      const now = new Date();
      const current = `request_token_log_y${now.getUTCFullYear()}m${String(now.getUTCMonth() + 1).padStart(2, '0')}`;
      expect(partitions.map((p) => p.name)).toContain(current);
    } finally {
      await client.end();
    }
  });

  it("set what the entities cannot say: request_token's pages filled to 90 % (room for a redemption's HOT update), no other table's storage changed", async () => {
    const client = new pg.Client({ connectionString: migratedUrl });
    await client.connect();
    try {
      const { rows } = await client.query(`
        select c.relname as table, c.reloptions as options from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = current_schema() and c.relkind in ('r', 'p') and c.reloptions is not null order by 1`);
      expect(rows).toEqual([{ table: 'request_token', options: ['fillfactor=90'] }]);
    } finally {
      await client.end();
    }
  });

  it('list every migration file in server/database/migrations/index.ts (npm run migration:create writes it)', async () => {
    const index = await readFile(new URL('../server/database/migrations/index.ts', import.meta.url), 'utf8');
    expect(index).toBe(await migrationsIndexText());
  });
});
