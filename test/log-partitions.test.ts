import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../server/config.js';
import {
  ensureComingLogPartitions,
  listLogPartitions,
  monthStart,
  partitionName,
  startLogPartitionUpkeep,
} from '../server/domain/log-partitions.js';
import { createServices } from '../server/services.js';
import { runCli } from './support/django.js';
import { startTestServer, TEST_SECRET, type TestServer } from './support/harness.js';
import { issue, REDEEM } from './support/operations.js';

/** The log's monthly partitions kept ahead: at start-up, on a timer, by the CLI, from several instances at once. */

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());

const now = new Date();
const ahead = (n: number) => partitionName(monthStart(now, n));
const names = async () => (await listLogPartitions(server.db.pool)).map((p) => p.name);
/** Removes months (detached, then dropped, as retention does). */
async function drop(...partitions: string[]) {
  for (const name of partitions) {
    await server.sql(`alter table request_token_log detach partition "${name}"`);
    await server.sql(`drop table "${name}"`);
  }
}

describe('the upkeep of the log partitions', () => {
  it('creates the missing months once when many instances ask at the same moment', async () => {
    await drop(ahead(1), ahead(2), ahead(3));
    // Twelve callers on connections of their own, as twelve instances would be.
    const pools = Array.from({ length: 12 }, () => new pg.Pool({ connectionString: server.databaseUrl, max: 1 }));
    try {
      const created = await Promise.all(pools.map((pool) => ensureComingLogPartitions(pool, 3)));
      expect(created.flat().sort()).toEqual([ahead(1), ahead(2), ahead(3)]);
      expect(created.filter((c) => c.length > 0)).toHaveLength(1);
    } finally {
      await Promise.all(pools.map((pool) => pool.end()));
    }
    const all = await names();
    for (let n = 0; n <= 3; n++) expect(all.filter((name) => name === ahead(n))).toHaveLength(1);
    // Once they exist, a round creates nothing (and takes no lock).
    expect(await ensureComingLogPartitions(server.db.pool, 3)).toEqual([]);
  });

  it('gives each new month the indexes and key of the log, and rows land in it', async () => {
    await drop(ahead(2));
    await ensureComingLogPartitions(server.db.pool, 2);
    const [{ n: parent }] = await server.sql(`select count(*)::int as n from pg_index where indrelid = 'request_token_log'::regclass`);
    const [{ n: own }] = await server.sql(`select count(*)::int as n from pg_index where indrelid = $1::regclass`, [ahead(2)]);
    expect(own).toBe(parent);
    const at = new Date(monthStart(now, 2).getTime() + 1000);
    const [row] = await server.sql(
      `insert into request_token_log (token_id, error_code, timestamp) values (0, 'TOKEN_MALFORMED', $1) returning tableoid::regclass::text as p`,
      [at],
    );
    expect(row.p).toBe(ahead(2));
  });

  it('runs before the service serves: createServices creates the coming months', async () => {
    await drop(ahead(1), ahead(2), ahead(3));
    const config = loadConfig({ NODE_ENV: 'test', REQUEST_TOKEN_SECRET: TEST_SECRET, DATABASE_URL: server.databaseUrl, LOG_PARTITIONS_AHEAD: '2' });
    const lines: string[] = [];
    const services = await createServices(config, { log: { info: (line) => lines.push(line), error: () => {} } });
    await services.close();
    const all = await names();
    expect(all).toEqual(expect.arrayContaining([ahead(0), ahead(1), ahead(2)]));
    expect(all).not.toContain(ahead(3));
    expect(lines).toContain(`created log partitions ${ahead(1)}, ${ahead(2)}`);
  });

  it('runs again on its timer, and not after it is stopped', async () => {
    const errors: unknown[] = [];
    const createdByTimer: string[][] = [];
    const upkeep = startLogPartitionUpkeep(server.db.pool, {
      monthsAhead: 3,
      intervalMs: 50,
      onCreated: (created) => createdByTimer.push(created),
      onError: (_m, e) => errors.push(e),
    });
    try {
      for (let i = 0; i < 100 && createdByTimer.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(createdByTimer).toEqual([[ahead(3)]]);
    } finally {
      await upkeep.stop();
    }
    await drop(ahead(3));
    await new Promise((r) => setTimeout(r, 300));
    expect(await names()).not.toContain(ahead(3));
    expect(errors).toEqual([]);
    await ensureComingLogPartitions(server.db.pool, 3);
  });

  it('keeps tracked work (a drop after retention): stop() waits for it, and a failure goes to onError', async () => {
    const errors: [string, unknown][] = [];
    const upkeep = startLogPartitionUpkeep(server.db.pool, { onError: (m, e) => errors.push([m, e]) });
    let finish!: () => void;
    const work = new Promise<void>((resolve) => (finish = resolve));
    const failure = new Error('no disk');
    upkeep.track(work, 'the first drop');
    upkeep.track(Promise.reject(failure), 'the second drop');
    let stopped = false;
    const stopping = upkeep.stop().then(() => void (stopped = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(stopped).toBe(false);
    finish();
    await stopping;
    expect(errors).toEqual([['the second drop failed', failure]]);
  });
});

describe('a month without a partition', () => {
  it('answers a redemption 503 SERVICE_UNAVAILABLE (LOG_PARTITION_MISSING), consumes nothing, and the service heals', async () => {
    const { token, jwt } = await issue(server, { scope: 's', maxUses: 2 });
    // The current month goes (its rows with it), and another session holds the upkeep's lock: no attempt can be
    // logged until it lets go.
    const holder = new pg.Client({ connectionString: server.databaseUrl });
    await holder.connect();
    try {
      await holder.query('begin');
      await holder.query('select pg_advisory_xact_lock($1)', [0x72746c70]);
      await drop(ahead(0));
      const refused = await server.gql(REDEEM, { input: { jwt, scope: 's' } });
      expect(refused.status).toBe(503);
      expect(refused.errors?.[0].extensions).toMatchObject({ code: 'SERVICE_UNAVAILABLE', reason: 'LOG_PARTITION_MISSING', retryable: true });
      const [state] = await server.sql('select used_to_date from request_token where id = $1', [token.id]);
      expect(state.used_to_date).toBe(0);
      // A refusal's row cannot be written either: the same answer, not a 500.
      const wrongScope = await server.gql(REDEEM, { input: { jwt, scope: 'other' } });
      expect(wrongScope.status).toBe(503);
      expect(wrongScope.errors?.[0].extensions?.reason).toBe('LOG_PARTITION_MISSING');
    } finally {
      await holder.query('rollback');
      await holder.end();
    }
    // Each such answer asks the upkeep for a round: the month comes back without anyone running anything.
    let retried: Awaited<ReturnType<TestServer['gql']>> | null = null as any;
    for (let i = 0; i < 50; i++) {
      retried = await server.gql(REDEEM, { input: { jwt, scope: 's' } });
      if (retried.status === 200) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((retried?.data as any)?.redeemRequestToken).toMatchObject({ __typename: 'Redemption', usesRemaining: 1 });
    expect(await names()).toContain(ahead(0));
  });
});

describe('request-token partitions ensure', () => {
  const env = () => ({ DATABASE_URL: server.databaseUrl, REQUEST_TOKEN_SECRET: TEST_SECRET });

  it('creates the months through --months ahead and lists every partition', async () => {
    await drop(ahead(3));
    const run = await runCli(['partitions', 'ensure', '--months', '4'], env());
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`created ${ahead(3)}, ${ahead(4)}`);
    expect(run.stdout).toMatch(new RegExp(`^${ahead(0)}  ${monthStart(now).toISOString()} … ${monthStart(now, 1).toISOString()}  ~\\d+ rows$`, 'm'));
    const again = await runCli(['partitions', 'ensure', '--months', '4'], env());
    expect(again.stdout).toContain('nothing to create: every month through 4 ahead exists');
  });

  it('refuses a --months that is not 1–120 (exit 2) and prints its usage on --help', async () => {
    for (const months of ['0', '121', 'x']) {
      const run = await runCli(['partitions', 'ensure', '--months', months], env());
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(/^--months must be a whole number from 1 to 120/);
    }
    const help = await runCli(['partitions', 'ensure', '--help'], {});
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^usage: request-token partitions ensure \[--months N\]/);
  });
});
