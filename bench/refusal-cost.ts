// `npx tsx bench/refusal-cost.ts`: what a flush of the refusal log costs per row (server/domain/refusal-log.ts), as
// PostgreSQL's CPU (the writing backend's, read from /proc: the database runs on this machine) and this process's,
// on an embedded PostgreSQL of its own. Rows as the bench's refuse scenario makes them (4,000 per flush: about 250 ms
// of a flood). Compared, alternately: the writer as it is (COPY), the multi-row INSERT it replaced
// (json_to_recordset, the stale-hour check over the inserted rows), and COPY with synchronous_commit off (not used:
// whether an audit row may be lost in a crash is a product decision, and one commit per flush costs little).
// REFUSAL_COST_ROWS, REFUSAL_COST_ROUNDS. See docs/hot-path.md.
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { loadConfig } from '../server/config.js';
import { initDatabase } from '../server/database/db.js';
import { startEmbeddedDatabase } from '../server/database/embedded-db.js';
import { ensureComingLogPartitions } from '../server/domain/log-partitions.js';
import { createRefusalLog, type UntiedRefusal } from '../server/domain/refusal-log.js';
import { markStaleSql } from '../server/domain/usage-rollups.js';
import { freePort } from '../test/support/ports.js';

const ROWS = Number(process.env.REFUSAL_COST_ROWS ?? 4000);
const ROUNDS = Number(process.env.REFUSAL_COST_ROUNDS ?? 5);
const refusal: UntiedRefusal = {
  code: 'TOKEN_SIGNATURE_INVALID', userId: null, clientIp: '198.51.100.23',
  userAgent: 'Mozilla/5.0 (X11; Linux x86_64) bench', clientId: null,
};
// The statement the writer used before (the last INSERT of server/domain/refusal-log.ts, ids given on insert).
const INSERT_BEFORE = `with logged as (
    insert into request_token_log (id, token_id, error_code, user_id, client_ip, user_agent, timestamp, client_id)
    select coalesce(id, nextval(pg_get_serial_sequence('request_token_log', 'id'))), 0, code, user_id, client_ip,
      user_agent, at, client_id
    from json_to_recordset($1::json)
      as r(id bigint, code text, user_id text, client_ip text, user_agent text, at timestamptz, client_id bigint)
    returning timestamp
  )
  ${markStaleSql('logged', 'timestamp')}`;

const dir = await mkdtemp(join(tmpdir(), 'rt-refusal-cost-'));
await chmod(dir, 0o755);
const cluster = await startEmbeddedDatabase({ dir: join(dir, 'pg'), port: await freePort(), persistent: false });
const db = await initDatabase(cluster.url, loadConfig({ DATABASE_URL: cluster.url, REQUEST_TOKEN_SECRET: 'x'.repeat(40) }));
const cpuMs = async (pid: number) => {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1].split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
};
try {
  await ensureComingLogPartitions(db.pool, 2);
  // One connection each, so that one backend does all of a writer's work and its CPU is the writer's.
  const writers: [string, pg.Pool, () => Promise<void>][] = [];
  const add = (name: string, options: string | undefined, write: (pool: pg.Pool) => () => Promise<void>) => {
    const pool = new pg.Pool({ connectionString: cluster.url, max: 1, ...(options ? { options } : {}) });
    writers.push([name, pool, write(pool)]);
  };
  const logOf = (pool: pg.Pool) => {
    const log = createRefusalLog(pool, { flushMs: 600_000, onError: (message, error) => console.error(message, error) });
    return async () => {
      for (let i = 0; i < ROWS; i++) log.record(refusal);
      await log.flush();
    };
  };
  add('COPY (the writer)', undefined, logOf);
  add('INSERT json_to_recordset (before)', undefined, (pool) => async () => {
    const at = new Date();
    const rows = Array.from({ length: ROWS }, () => ({ id: null, code: refusal.code, user_id: refusal.userId,
      client_ip: refusal.clientIp, user_agent: refusal.userAgent, at, client_id: refusal.clientId }));
    await pool.query({ name: 'log-untied-batch', text: INSERT_BEFORE, values: [JSON.stringify(rows)] });
  });
  add('COPY, synchronous_commit off', '-c synchronous_commit=off', logOf);
  const pids = await Promise.all(writers.map(async ([, pool]) => (await pool.query('select pg_backend_pid() as pid')).rows[0].pid as number));
  for (let round = 1; round <= ROUNDS; round++) {
    for (const [k, [name, , write]] of writers.entries()) {
      const cpu = process.cpuUsage();
      const before = await cpuMs(pids[k]);
      const started = performance.now();
      await write();
      const elapsed = performance.now() - started;
      const pgMs = (await cpuMs(pids[k])) - before;
      const used = process.cpuUsage(cpu);
      process.stdout.write(
        `round ${round} ${name}: PostgreSQL ${((pgMs * 1000) / ROWS).toFixed(1)} µs/row, this process ` +
          `${((used.user + used.system) / ROWS).toFixed(1)} µs/row, ${((elapsed * 1000) / ROWS).toFixed(1)} µs/row elapsed\n`,
      );
    }
  }
  await Promise.all(writers.map(([, pool]) => pool.end()));
} finally {
  await db.close();
  await cluster.stop();
  await rm(dir, { recursive: true, force: true });
}
