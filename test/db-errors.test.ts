import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitOutcomeUnknown, transientReason } from '../server/database/db-errors.js';
import { initDatabase, type Database } from '../server/database/db.js';
import { answerFailedBatch, type Waiting } from '../server/domain/micro-batch.js';
import { createTestDatabase } from './support/harness.js';
import { freePort } from './support/ports.js';

// The classification of database failures (server/database/db-errors.ts) on the errors a real PostgreSQL and the real
// pg client and ORM raise: what a client may retry (503 SERVICE_UNAVAILABLE) and what stays a bug (masked). The errors
// a Citus coordinator raises when a worker goes away are produced for real by test/citus/worker-loss.test.ts; here
// PostgreSQL raises the same SQLSTATE and message from PL/pgSQL.
let url: string;
let db: Database;
let admin: pg.Client;

beforeAll(async () => {
  url = await createTestDatabase({ plain: true });
  db = await initDatabase(url, { dbPoolSize: 4, dbPoolTimeoutMs: 2_000, dbStatementTimeoutMs: 10_000, dbLockTimeoutMs: 200 });
  admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query('create table if not exists probe (id int primary key)');
  await admin.query('insert into probe values (1) on conflict do nothing');
});
afterAll(async () => {
  await admin?.end();
  await db?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const caught = async (work: () => Promise<unknown>): Promise<unknown> => {
  try {
    await work();
  } catch (error) {
    return error;
  }
  throw new Error('expected a failure');
};

/** Terminates the backends running `like`, once one runs it. */
async function terminateWhenRunning(like: string) {
  for (let i = 0; i < 100; i++) {
    const { rows } = await admin.query(
      `select pg_terminate_backend(pid) as ok from pg_stat_activity
       where datname = current_database() and pid <> pg_backend_pid() and state = 'active' and query like $1`,
      [like],
    );
    if (rows.length) return;
    await sleep(20);
  }
  throw new Error(`no backend ran ${like}`);
}

/** A real error PostgreSQL raises with this SQLSTATE and message (the shapes a Citus coordinator relays). */
const raised = (code: string, message: string) =>
  caught(() => admin.query(`do $$ begin raise exception using errcode = '${code}', message = $m$${message}$m$; end $$`));

describe('what a client may retry', () => {
  it('a statement whose backend is terminated, and the next query on that connection', async () => {
    const client = await db.pool.connect();
    client.on('error', () => {});
    try {
      const running = caught(() => client.query('select pg_sleep(5) /* terminated */'));
      await terminateWhenRunning('%pg_sleep(5) /* terminated */%');
      const during = (await running) as pg.DatabaseError;
      expect(during).toBeInstanceOf(pg.DatabaseError);
      expect(during.code).toBe('57P01');
      expect(transientReason(during)).toBe('DATABASE_UNAVAILABLE');
      const after = await caught(() => client.query('select 1'));
      expect(transientReason(after), String(after)).toBe('DATABASE_UNAVAILABLE');
    } finally {
      client.release(true);
    }
  });

  it('an idle pooled connection terminated, as the pool reports it', async () => {
    const pool = new pg.Pool({ connectionString: url, max: 1, application_name: 'db-errors-idle' });
    const reported: unknown[] = [];
    pool.on('error', (error) => reported.push(error));
    try {
      await pool.query('select 1');
      await admin.query(`select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'db-errors-idle'`);
      for (let i = 0; i < 100 && reported.length === 0; i++) await sleep(20);
      expect(reported.length).toBeGreaterThan(0);
      for (const error of reported) expect(transientReason(error), String(error)).toBe('DATABASE_UNAVAILABLE');
    } finally {
      await pool.end();
    }
  });

  it('nothing listening: refused by one address, or by every address of a name (AggregateError)', async () => {
    const port = await freePort();
    for (const host of ['127.0.0.1', 'localhost']) {
      const client = new pg.Client({ host, port, user: 'x', database: 'x', connectionTimeoutMillis: 2_000 });
      const error = await caught(() => client.connect());
      expect(transientReason(error), `${host}: ${String(error)}`).toBe('DATABASE_UNAVAILABLE');
    }
  });

  it('no pool connection free in time, a lock held elsewhere, a statement over its time', async () => {
    const pool = new pg.Pool({ connectionString: url, max: 1, connectionTimeoutMillis: 1_000 });
    const held = await pool.connect();
    try {
      expect(transientReason(await caught(() => pool.query('select 1')))).toBe('POOL_EXHAUSTED');
    } finally {
      held.release();
      await pool.end();
    }
    await admin.query('begin');
    try {
      await admin.query('select * from probe where id = 1 for update');
      // Through the ORM (lock_timeout 200 ms): MikroORM's own exception, the driver's error under it.
      const orm = await caught(() => db.orm.em.fork().getConnection().execute('select * from probe where id = 1 for update'));
      expect(transientReason(orm), String(orm)).toBe('LOCK_TIMEOUT');
    } finally {
      await admin.query('rollback');
    }
    const slow = await caught(() => db.pool.query({ text: "set statement_timeout = 50; select pg_sleep(1)" }));
    expect(transientReason(slow)).toBe('STATEMENT_TIMEOUT');
  });

  it("a node lost behind a relaying server (Citus): libpq's messages and the shutdown's, as internal_error or io_error", async () => {
    const relayed = [
      // ReportResultError: the worker's connection broke while the coordinator waited for its result.
      ['XX000', 'SSL SYSCALL error: EOF detected\ninvalid socket'],
      ['XX000', 'server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally'],
      ['XX000', 'SSL connection has been closed unexpectedly'],
      ['XX000', 'could not receive data from server: Connection reset by peer'],
      ['XX000', 'connection not open'],
      // ReportCopyError: the worker's own message, its SQLSTATE dropped.
      ['XX000', 'terminating connection due to administrator command'],
      ['XX000', 'the database system is shutting down'],
      ['58030', 'failed to COPY to shard 102491 on 127.0.0.1:9742'],
      ['58030', 'failed to complete COPY on 127.0.0.1:9742'],
      // ErrorIfPostCommitFailedShardPlacements: a worker lost while its part of the transaction was committed.
      ['XX000', 'could not commit transaction for shard 102415 on at least one active node'],
      // MarkRemoteTransactionFailed: a connection essential to the transaction failed (mid-statement or committing).
      ['XX000', 'failure on connection marked as essential: 127.0.0.1:9742'],
    ];
    for (const [code, message] of relayed) {
      const error = await raised(code, message);
      expect(error).toBeInstanceOf(pg.DatabaseError);
      expect(transientReason(error), `${code} ${message}`).toBe('DATABASE_UNAVAILABLE');
    }
    expect(commitOutcomeUnknown(await raised('XX000', 'could not commit transaction for shard 102415 on at least one active node'))).toBe(true);
    expect(commitOutcomeUnknown(await raised('XX000', 'failure on connection marked as essential: 127.0.0.1:9742'))).toBe(true);
    expect(commitOutcomeUnknown(await raised('XX000', 'SSL SYSCALL error: EOF detected'))).toBe(false);
  });

  it('a failure wrapped in another error (cause, AggregateError)', async () => {
    const lost = await raised('57P01', 'terminating connection due to administrator command');
    expect(transientReason(new Error('while redeeming', { cause: lost }))).toBe('DATABASE_UNAVAILABLE');
    expect(transientReason(new AggregateError([new TypeError('other'), lost]))).toBe('DATABASE_UNAVAILABLE');
  });
});

describe('what stays a bug', () => {
  it('a bad statement, a broken constraint, an internal error of any other kind, an error of the code', async () => {
    const bugs = [
      await caught(() => admin.query('selec 1')),
      await caught(() => admin.query('insert into probe values (1)')),
      await raised('XX000', 'could not find shard 102415'),
      await raised('58030', 'could not read block 0 in file "base/1/2": read only 0 of 8192 bytes'),
      await raised('08P01', 'invalid message format'),
      new TypeError("Cannot read properties of undefined (reading 'id')"),
    ];
    for (const error of bugs) expect(transientReason(error), String(error)).toBeNull();
  });
});

describe('a failed batch statement (micro-batch.ts)', () => {
  const members = (n: number) => {
    const answers: string[] = [];
    const batch: Waiting<number, string>[] = Array.from({ length: n }, (_, i) => ({
      values: i,
      since: 0,
      resolve: (answer) => answers.push(`${i}: ${answer}`),
      reject: (error) => answers.push(`${i}: rejected ${(error as Error).message}`),
    }));
    return { batch, answers };
  };

  it('runs its members again alone when PostgreSQL refused the statement (nothing of it stored)', async () => {
    const { batch, answers } = members(3);
    const alone: number[] = [];
    await answerFailedBatch(batch, await caught(() => admin.query('insert into probe values (1)')), async (i) => {
      alone.push(i);
      return 'alone';
    });
    expect(alone).toEqual([0, 1, 2]);
    expect(answers.sort()).toEqual(['0: alone', '1: alone', '2: alone']);
  });

  it('does not run them again when its commit may have happened (a worker lost during the commit)', async () => {
    const { batch, answers } = members(3);
    const alone: number[] = [];
    const lost = await raised('XX000', 'could not commit transaction for shard 102415 on at least one active node');
    await answerFailedBatch(batch, lost, async (i) => {
      alone.push(i);
      return 'alone';
    });
    expect(alone).toEqual([]);
    expect(answers.map((a) => a.replace(/ for shard.*/, '')).sort()).toEqual(
      ['0', '1', '2'].map((i) => `${i}: rejected could not commit transaction`),
    );
  });
});
