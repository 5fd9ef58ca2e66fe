// `npm run migration:create [-- --name=what-changed]`: writes the next migration from the entities' changes.
//
// The entities (server/database/entities/) are the schema. This applies every existing migration to a database, asks
// MikroORM's schema comparison what the entities want beyond it, writes that as
// server/database/migrations/Migration<timestamp>.ts and lists it in server/database/migrations/index.ts.
//
// The database is DATABASE_URL when set (its pending migrations are applied first, as `npm start` would), else a
// throwaway embedded PostgreSQL in a temporary folder: the comparison is always against exactly what the migrations
// build, whatever a development database holds.
import { chmod, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MikroORM } from '@mikro-orm/postgresql';
import { startEmbeddedDatabase, type EmbeddedDatabase } from '../server/database/embedded-db.js';
import { freePort } from '../test/support/ports.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MIGRATIONS = join(ROOT, 'server/database/migrations');


/** index.ts as it must read for the migration files in the folder, in name (= time) order. */
export async function migrationsIndexText(dir = MIGRATIONS): Promise<string> {
  const names = (await readdir(dir))
    .filter((file) => /^Migration\d{14}(_[A-Za-z0-9_]+)?\.ts$/.test(file))
    .map((file) => file.replace(/\.ts$/, ''))
    .sort();
  return `import type { MigrationObject } from '@mikro-orm/core';
${names.map((name) => `import { ${name} } from './${name}.js';`).join('\n')}

/**
 * Every migration, in order. Listed explicitly so they run the same under tsx, vitest and a build.
 * \`npm run migration:create\` rewrites this file from the folder (run it after adding a migration by hand too).
 */
export const migrationsList: MigrationObject[] = [
${names.map((name) => `  { name: '${name}', class: ${name} },`).join('\n')}
];
`;
}

/** Rewrites index.ts from the migration files in the folder. */
export async function writeMigrationsIndex(dir = MIGRATIONS): Promise<void> {
  await writeFile(join(dir, 'index.ts'), await migrationsIndexText(dir));
}

async function main() {
  const nameArg = process.argv.find((arg) => arg.startsWith('--name='))?.slice('--name='.length);
  const blank = process.argv.includes('--blank');
  // First the index, so a hand-written migration dropped into the folder is listed (and applied) too; the ORM's
  // options import the index, so they are loaded after it.
  await writeMigrationsIndex();
  const { ormOptions } = await import('../mikro-orm.config.js');
  let embedded: EmbeddedDatabase | null = null;
  let tempDir: string | null = null;
  let url = process.env.DATABASE_URL;
  if (!url) {
    tempDir = await mkdtemp(join(tmpdir(), 'rt-migration-'));
    // Run as root, PostgreSQL runs as the postgres user, which must enter the folder this script made (0711: no listing).
    await chmod(tempDir, 0o711);
    embedded = await startEmbeddedDatabase({ dir: join(tempDir, 'pg'), port: await freePort(), persistent: false });
    url = embedded.url;
  }
  try {
    const orm = await MikroORM.init({ ...ormOptions(url, 2), baseDir: ROOT, debug: false });
    try {
      const migrator = orm.getMigrator();
      await migrator.up();
      // The name is appended to the class name, so it must be a plain identifier.
      const suffix = nameArg ? nameArg.replace(/[^A-Za-z0-9]+/g, '_') : undefined;
      const result = await migrator.createMigration(MIGRATIONS, blank, false, suffix);
      if (!result.fileName) {
        console.log('The entities and the migrations agree: no migration needed.');
        return;
      }
      await writeMigrationsIndex();
      console.log(`Wrote server/database/migrations/${result.fileName} and listed it in index.ts:\n`);
      console.log(result.diff.up.join('\n'));
      console.log('\nRead it, then run `npm test` (test/schema-sync.test.ts checks entities and migrations agree).');
    } finally {
      await orm.close(true);
    }
  } finally {
    await embedded?.stop();
    if (tempDir) await rm(tempDir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((error) => {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  });
}
