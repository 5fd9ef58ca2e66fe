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

/** Every table's columns, constraints and indexes as PostgreSQL itself prints them, the ORM's own table aside. */
async function catalog(url: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const own = `n.nspname = 'public' and c.relname <> 'mikro_orm_migrations'`;
    const columns = await client.query(`
      select c.relname as table, a.attname as column, format_type(a.atttypid, a.atttypmod) as type, a.attnotnull as not_null,
        pg_get_expr(d.adbin, d.adrelid) as default
      from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
        left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
      where ${own} and c.relkind = 'r' and a.attnum > 0 and not a.attisdropped
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
    return { columns: columns.rows, constraints: constraints.rows, indexes: indexes.rows };
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

  it('list every migration file in server/database/migrations/index.ts (npm run migration:create writes it)', async () => {
    const index = await readFile(new URL('../server/database/migrations/index.ts', import.meta.url), 'utf8');
    expect(index).toBe(await migrationsIndexText());
  });
});
