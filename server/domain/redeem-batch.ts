import pg from 'pg';
import { REDEEM_SQL, redeemableSql, redeemSql } from './redeem.js';
import { TOKEN_COLUMNS } from './tokens.js';

/**
 * Micro-batching of successful redemptions. While every statement slot is busy, redemptions wait here, and the next
 * free slot takes all that are waiting (up to `maxBatch`) in one statement and one commit, where the per-request path
 * spends a round trip, a plan execution and a commit (a WAL flush) on each. With a slot free (low load) a redemption
 * runs at once, alone, with REDEEM_SQL (REDEEM_ALONE_SQL: skipping a locked row, as a batch does).
 *
 * Only the first attempt of the success path is batched: `consume` answers the updated token row with its log id, or
 * null when this redemption did not consume a use, and the caller finds out why exactly as after the per-request
 * statement (the refusal statement, which also notices a use that is still there and retries, alone). A batch never
 * waits for a row lock: a token locked elsewhere (another batch, a revocation) is skipped and its redemption retries
 * alone, so one busy token cannot hold up the others. Redemptions with an idempotency key keep the per-request
 * statement (their key row may conflict, and that must fail alone).
 */
export interface RedeemBatcher {
  /** `values` are REDEEM_SQL's parameters, with no idempotency key. */
  consume(values: unknown[]): Promise<Record<string, any> | null>;
  /** Counts since start: statements run, and redemptions that shared one with others. */
  readonly stats: { statements: number; batched: number };
}

export interface RedeemBatchOptions {
  /** Statements in flight at most (the pool's connections); redemptions beyond wait here, where they are batched. */
  slots: number;
  /** Redemptions per statement at most. 1 turns batching off. */
  maxBatch: number;
  /**
   * How long a redemption may wait for a statement to take it (DB_POOL_TIMEOUT_MS): then it fails as a request that
   * found no free connection does (503 POOL_EXHAUSTED), rather than queueing behind a stalled database.
   */
  waitTimeoutMs: number;
}

/** A redemption waited longer than `waitTimeoutMs` for a batch statement; answered as POOL_EXHAUSTED. */
export class RedeemQueueTimeout extends Error {
  override readonly name = 'RedeemQueueTimeout';
  constructor(waitedMs: number) {
    super(`no batch connection came free within ${waitedMs} ms`);
  }
}

// One row per redemption; a token named twice takes part once (the first), the others get no row and retry alone.
// The checks (redeemableSql, as in REDEEM_SQL) run in a SELECT … FOR UPDATE SKIP LOCKED: a row locked by another transaction is skipped, not waited
// for (so batches cannot deadlock either), and the rows it returns are locked, so their checks stay true until the
// commit. Then the same UPDATE and log INSERT as REDEEM_SQL, for all at once; answers are matched back by token id,
// unique within a batch. $3 holds the token ids: rows are found by primary key whatever the planner thinks of the
// JSON's row count (it assumes 100; joining on the JSON alone it chose sequential scans, or the scope index).
export const REDEEM_BATCH_SQL = `with input as (
    select * from json_to_recordset($1::json) as r(in_n int, in_id bigint, in_scope text, in_host text, in_path text,
      in_params text, in_user text, in_ip text, in_agent text, in_tenant bigint, in_kid text)
  ), first as (
    select distinct on (in_id) * from input order by in_id, in_n
  ), eligible as (
    select t.id, i.in_n, i.in_user, i.in_ip, i.in_agent
    from request_token t join first i on i.in_id = t.id
    where t.id = any($3::bigint[]) and ${redeemableSql(
      {
        scope: 'i.in_scope',
        host: 'i.in_host',
        path: 'i.in_path',
        params: 'i.in_params::jsonb',
        userId: 'i.in_user',
        tolerance: '$2',
        tenant: 'i.in_tenant',
        kid: 'i.in_kid',
      },
      't',
    )}
    for update of t skip locked
  ), used as (
    update request_token set used_to_date = used_to_date + 1
    where id = any($3::bigint[]) and id in (select id from eligible) and used_to_date < max_uses
    returning ${TOKEN_COLUMNS}
  ), log as (
    insert into request_token_log (token_id, user_id, client_ip, user_agent, client_id)
    select used.id, e.in_user, e.in_ip, e.in_agent, used.client_id from used join eligible e on e.id = used.id
    returning id as log_id, token_id
  )
  select used.*, e.in_n, log.log_id from used join eligible e on e.id = used.id join log on log.token_id = used.id`;

/**
 * REDEEM_SQL for a redemption that runs alone on a batch connection (a lone click): a row locked elsewhere is skipped
 * rather than waited for, as in a batch. Cheaper than a batch of one (about 0.1 ms of PostgreSQL time less,
 * bench/statement-cost.ts).
 */
export const REDEEM_ALONE_SQL = redeemSql({ skipLocked: true });

interface Waiting {
  values: unknown[];
  since: number;
  resolve(row: Record<string, any> | null): void;
  reject(error: unknown): void;
}

export function createRedeemBatcher(pool: pg.Pool, options: RedeemBatchOptions): RedeemBatcher {
  const queue: Waiting[] = [];
  let busy = 0;
  const stats = { statements: 0, batched: 0 };
  // While redemptions wait, the oldest are checked against the deadline (the queue is in arrival order).
  let sweeper: NodeJS.Timeout | null = null;
  const sweep = () => {
    const now = performance.now();
    let expired = 0;
    while (expired < queue.length && now - queue[expired].since > options.waitTimeoutMs) expired++;
    if (expired > 0) for (const one of queue.splice(0, expired)) one.reject(new RedeemQueueTimeout(options.waitTimeoutMs));
    if (queue.length === 0 && sweeper) {
      clearInterval(sweeper);
      sweeper = null;
    }
  };

  const single = async (values: unknown[]) =>
    (await pool.query({ name: 'redeem', text: REDEEM_SQL, values })).rows[0] ?? null;

  async function run(batch: Waiting[]): Promise<void> {
    if (batch.length === 1) {
      const [one] = batch;
      await pool.query({ name: 'redeem-alone', text: REDEEM_ALONE_SQL, values: one.values }).then(
        ({ rows }) => one.resolve(rows[0] ?? null),
        one.reject,
      );
      return;
    }
    let rows: Record<string, any>[];
    try {
      const input = batch.map(({ values: v }, n) => ({
        in_n: n, in_id: v[0], in_scope: v[1], in_host: v[2], in_path: v[3], in_params: v[4], in_user: v[5], in_ip: v[6],
        in_agent: v[7], in_tenant: v[11], in_kid: v[12],
      }));
      // The clock tolerance (REDEEM_SQL's $9) is configuration: the same for all.
      ({ rows } = await pool.query({
        name: 'redeem-batch',
        text: REDEEM_BATCH_SQL,
        // The ids again as an array: the rows are then found through the primary key whatever the planner thinks
        // of the JSON's row count (it assumes 100, and chose sequential scans).
        values: [JSON.stringify(input), batch[0].values[8], input.map((r) => r.in_id)],
      }));
    } catch (error) {
      // PostgreSQL refused the statement (one bad value, a statement timeout): it was rolled back, and each redemption
      // runs again alone, so that an error reaches only the request it belongs to. Anything else (no connection came
      // free, the connection was lost, perhaps after the commit) is every redemption's answer as it is: running them
      // again could not help, or could count a use twice.
      if (!(error instanceof pg.DatabaseError)) {
        for (const one of batch) one.reject(error);
        return;
      }
      await Promise.all(batch.map((one) => single(one.values).then(one.resolve, one.reject)));
      return;
    }
    const byIndex = new Map(rows.map((row) => [row.in_n as number, row]));
    batch.forEach((one, n) => one.resolve(byIndex.get(n) ?? null));
  }

  function pump(): void {
    while (busy < options.slots && queue.length > 0) {
      const batch = queue.splice(0, options.maxBatch);
      busy++;
      stats.statements++;
      if (batch.length > 1) stats.batched += batch.length;
      void run(batch).finally(() => {
        busy--;
        pump();
      });
    }
  }

  return {
    stats,
    consume(values) {
      return new Promise((resolve, reject) => {
        queue.push({ values, since: performance.now(), resolve, reject });
        pump();
        if (queue.length > 0 && !sweeper) {
          sweeper = setInterval(sweep, Math.max(10, Math.min(100, options.waitTimeoutMs / 4)));
          sweeper.unref();
        }
      });
    },
  };
}

/** The batcher on the database's batch connections, or null when batching is off (REDEEM_BATCH_MAX=1). */
export const redeemBatcherFor = (
  db: { batchPool: pg.Pool | null },
  config: { redeemBatchMax: number; dbPoolTimeoutMs: number },
): RedeemBatcher | null =>
  db.batchPool
    ? createRedeemBatcher(db.batchPool, {
        slots: db.batchPool.options.max,
        maxBatch: config.redeemBatchMax,
        waitTimeoutMs: config.dbPoolTimeoutMs,
      })
    : null;
