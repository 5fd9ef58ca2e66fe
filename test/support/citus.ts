import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { isAlive } from './process.js';
import { initDatabase } from '../../server/database/db.js';
import { distributeForCitus } from '../../server/domain/citus.js';

/**
 * Test databases on a Citus cluster (`npm run test:citus`, scripts/test-citus.sh): Citus keeps its metadata per database,
 * so a new database needs the extension on every node and the nodes registered in it; it is then migrated and
 * distributed as `request-token citus distribute` does, before the test's service starts on it.
 */
export async function prepareCitusDatabase(serverUrl: string, name: string): Promise<void> {
  const nodes = await withClient(serverUrl, async (c) =>
    (
      await c.query<{ host: string; port: number; group_id: number }>(
        `select nodename as host, nodeport as port, groupid as group_id from pg_dist_node
         where noderole = 'primary' order by groupid`,
      )
    ).rows,
  );
  const at = (host: string, port: number, database: string) => {
    const url = new URL(serverUrl);
    url.hostname = host;
    url.port = String(port);
    url.pathname = `/${database}`;
    return url.toString();
  };
  const coordinator = nodes.find((n) => n.group_id === 0)!;
  for (const node of nodes) {
    if (node.group_id !== 0) await withClient(at(node.host, node.port, 'postgres'), (c) => c.query(`create database ${name}`));
    await withClient(at(node.host, node.port, name), (c) => c.query('create extension if not exists citus'));
  }
  await withClient(at(coordinator.host, coordinator.port, name), async (c) => {
    // Statement counters (citus_stat_counters) for the router tests.
    await c.query(`alter database ${name} set citus.enable_stat_counters = on`);
    await c.query('select citus_set_coordinator_host($1, $2)', [coordinator.host, coordinator.port]);
    for (const node of nodes) if (node.group_id !== 0) await c.query('select citus_add_node($1, $2)', [node.host, node.port]);
  });
  const url = at(coordinator.host, coordinator.port, name);
  const db = await initDatabase(url, { dbPoolSize: 2, dbPoolTimeoutMs: 10_000, dbStatementTimeoutMs: 120_000, dbLockTimeoutMs: 10_000 });
  try {
    await distributeForCitus(db.pool, () => {});
  } finally {
    await db.close();
  }
}

async function withClient<T>(url: string, work: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

const BIN = '/usr/lib/postgresql/15/bin';
const asPostgres = (command: string) => execFileSync('su', ['postgres', '-s', '/bin/sh', '-c', command], { stdio: 'pipe' });

/** The cluster scripts/test-citus.sh started: its folder (node0 the coordinator, nodeN worker N) and base port. */
export function citusCluster(): { dir: string; basePort: number } {
  const dir = process.env.CITUS_CLUSTER_DIR;
  if (!dir) throw new Error('CITUS_CLUSTER_DIR is not set: run these tests through npm run test:citus');
  return { dir, basePort: Number(process.env.CITUS_BASE_PORT ?? 9750) };
}

/**
 * Stops (fast shutdown, or `immediate`: its processes killed, as in a crash) or starts worker `n` of the cluster.
 * Synchronous, as the tests were written for: their load pauses while the worker stops. A stop that has not finished
 * after 5 s ends as a crash does, its postmaster killed: in one `.ci/run` an immediate shutdown had not finished after
 * pg_ctl's default 60 s, and the test process, blocked that long, had its connections cut for idling in their
 * transactions (idle_in_transaction_session_timeout), which failed the file with uncaught errors.
 */
export function workerCtl(action: 'stop' | 'start', n: number, mode: 'fast' | 'immediate' = 'fast'): void {
  const { dir } = citusCluster();
  const data = join(dir, `node${n}`);
  if (action === 'start') {
    asPostgres(`${BIN}/pg_ctl -D ${data} -l ${data}/log -w start`);
    return;
  }
  try {
    asPostgres(`${BIN}/pg_ctl -D ${data} -m ${mode} -w -t 5 stop`);
  } catch (error) {
    const pidFile = join(data, 'postmaster.pid');
    if (!existsSync(pidFile)) throw error;
    const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
    process.stderr.write(`worker ${n}: ${mode} shutdown not finished after 5 s: killing its postmaster (${pid})\n`);
    if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    const pause = new Int32Array(new SharedArrayBuffer(4));
    for (let i = 0; i < 200 && isAlive(pid); i++) Atomics.wait(pause, 0, 0, 50);
  }
}

/**
 * Starts worker `n` (a new node folder, as cluster.sh makes them) and adds it to the cluster for `databases` (each gets
 * the database and the extension on the new node). Its shards come later, from a rebalance.
 */
export async function addWorker(n: number, serverUrl: string, databases: string[]): Promise<string> {
  const { dir, basePort } = citusCluster();
  const data = join(dir, `node${n}`);
  const port = basePort + n;
  if (!existsSync(data)) {
    asPostgres(`${BIN}/initdb -D ${data} -U postgres --auth=trust >/dev/null`);
    appendFileSync(
      join(data, 'postgresql.conf'),
      `shared_preload_libraries = 'citus'\nlisten_addresses = '127.0.0.1'\nport = ${port}\nmax_connections = 300\nunix_socket_directories = '${dir}'\n`,
    );
  }
  asPostgres(`${BIN}/pg_ctl -D ${data} -l ${data}/log -w start`);
  const url = (database: string, p = port) => {
    const u = new URL(serverUrl);
    u.port = String(p);
    u.pathname = `/${database}`;
    return u.toString();
  };
  for (const database of databases) {
    await withClient(url('postgres'), (c) => c.query(`create database ${database}`));
    await withClient(url(database), (c) => c.query('create extension citus'));
    await withClient(url(database, basePort), (c) => c.query('select citus_add_node($1, $2)', ['127.0.0.1', port]));
  }
  return `127.0.0.1:${port}`;
}
