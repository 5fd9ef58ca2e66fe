import pg from 'pg';
import { REDEEM_SQL } from './redeem.js';
import { TOKEN_COLUMNS } from './tokens.js';

/**
 * Micro-batching of successful redemptions. While every statement slot is busy, redemptions wait here, and the next
 * free slot takes all that are waiting (up to `maxBatch`) in one statement and one commit, where the per-request path
 * spends a round trip, a plan execution and a commit (a WAL flush) on each. With a slot free (low load) a redemption
 * runs at once, in a statement of its own: no added latency.
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
  /** Statements in flight at most; redemptions beyond wait here, where they can be batched. */
  slots: number;
  /** Redemptions per statement at most. 1 turns batching off. */
  maxBatch: number;
}

// One row per redemption; a token named twice takes part once (the first), the others get null and retry alone. Rows
// locked by another transaction are skipped (SKIP LOCKED: no waiting, so no deadlock between batches either). Then the
// same conditional UPDATE and log INSERT as REDEEM_SQL, for all at once; the log rows are matched back by token id,
// which is unique within a batch.
export const REDEEM_BATCH_SQL = `with input as (
    select * from json_to_recordset($1::json) as r(in_n int, in_id bigint, in_scope text, in_host text, in_path text,
      in_params text, in_user text, in_ip text, in_agent text, in_tenant bigint)
  ), first as (
    select distinct on (in_id) * from input order by in_id, in_n
  ), locked as (
    select t.id from request_token t join first on t.id = first.in_id for update of t skip locked
  ), used as (
    update request_token set used_to_date = used_to_date + 1
    from first as i
    where id = i.in_id and id in (select id from locked) and scope = i.in_scope and revoked_at is null
      and (not_before is null or not_before <= now() + make_interval(secs => $2))
      and (expires_at is null or expires_at > now() - make_interval(secs => $2))
      and (target_host is null or (target_host = i.in_host and target_path = i.in_path and target_params <@ i.in_params::jsonb))
      and (i.in_user is null or user_id is null or user_id = i.in_user)
      and used_to_date < max_uses
      and (i.in_tenant is null or client_id = i.in_tenant)
    returning i.in_n, i.in_user, i.in_ip, i.in_agent, ${TOKEN_COLUMNS}
  ), log as (
    insert into request_token_log (token_id, user_id, client_ip, user_agent, client_id)
    select id, in_user, in_ip, in_agent, client_id from used
    returning id as log_id, token_id
  )
  select used.*, log.log_id from used join log on log.token_id = used.id`;

interface Waiting {
  values: unknown[];
  resolve(row: Record<string, any> | null): void;
  reject(error: unknown): void;
}

export function createRedeemBatcher(pool: pg.Pool, options: RedeemBatchOptions): RedeemBatcher {
  const queue: Waiting[] = [];
  let busy = 0;
  const stats = { statements: 0, batched: 0 };

  const single = async (values: unknown[]) =>
    (await pool.query({ name: 'redeem', text: REDEEM_SQL, values })).rows[0] ?? null;

  async function run(batch: Waiting[]): Promise<void> {
    let rows: Record<string, any>[];
    try {
      const input = batch.map(({ values: v }, n) => ({
        in_n: n, in_id: v[0], in_scope: v[1], in_host: v[2], in_path: v[3], in_params: v[4], in_user: v[5], in_ip: v[6],
        in_agent: v[7], in_tenant: v[11],
      }));
      // The clock tolerance (REDEEM_SQL's $9) is configuration: the same for all.
      ({ rows } = await pool.query({
        name: 'redeem-batch',
        text: REDEEM_BATCH_SQL,
        values: [JSON.stringify(input), batch[0].values[8]],
      }));
    } catch (error) {
      // PostgreSQL refused the statement (one bad value, a statement timeout): it was rolled back, and each redemption
      // runs again alone, so that an error reaches only the request it belongs to. Anything else (no connection came
      // free, the connection was lost, perhaps after the commit) is every redemption's answer as it is: running them
      // again could not help, or could count a use twice.
      if (batch.length === 1 || !(error instanceof pg.DatabaseError)) {
        for (const one of batch) one.reject(error);
        return;
      }
      await Promise.all(batch.map((one) => single(one.values).then(one.resolve, one.reject)));
      return;
    }
    if (batch.length === 1) return batch[0].resolve(rows[0] ?? null);
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
        queue.push({ values, resolve, reject });
        pump();
      });
    },
  };
}

/**
 * The batcher the configuration asks for: null with REDEEM_BATCH_MAX=1. A third of the pool's connections run
 * statements; measured on 2 cores (BENCHMARKS.md), fewer and fuller batches beat many small ones, and the rest of the
 * pool stays free for refusals, issuing and reads.
 */
export const redeemBatcherFor = (
  pool: pg.Pool,
  config: { redeemBatchMax: number; dbPoolSize: number },
): RedeemBatcher | null =>
  config.redeemBatchMax > 1
    ? createRedeemBatcher(pool, { slots: Math.max(1, Math.round(config.dbPoolSize / 3)), maxBatch: config.redeemBatchMax })
    : null;
