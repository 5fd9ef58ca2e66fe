import type pg from 'pg';
import { holdConnection } from '../database/held-connection.js';
import { queryPrepared } from '../database/prepared-query.js';
import {
  PER_REDEMPTION_PARAMS,
  REDEEM_ALONE_SQL,
  REDEEM_SQL,
  type RedeemedRow,
  type RedemptionValues,
} from './redeem.js';
import { answerFailedBatch, createMicroBatcher, type MicroBatchOptions, type Waiting } from './micro-batch.js';
import { bindPlaceholders, namedStatement, sqlValue } from './named-sql.js';
import { redeemableSql, SHARED_PARAMS } from './redemption-rules.js';
import { tokenColumns, tokenFields } from './tokens.js';

/**
 * Micro-batching of successful redemptions (the queue is micro-batch.ts's, shared with issues). While every statement
 * slot is busy, the next free slot takes all redemptions that are waiting (up to `maxBatch`) in one statement and one
 * commit, where the per-request path spends a round trip, a plan execution and a commit (a WAL flush) on each. With a
 * slot free (low load) a redemption runs at once, alone: the per-request statement (REDEEM_SQL) on the per-request
 * connections, counted as one of the slots while it runs. One that runs longer than LONE_RELEASE_MS (stuck behind a
 * row lock, a slow commit) gives its slot back, so the batch connections never wait on a row lock and one busy token
 * holds up no other redemption. A batch of one that waited in the queue runs on a batch connection with
 * REDEEM_ALONE_SQL, which skips a locked row as a batch does.
 *
 * Only the first attempt of the success path is batched: `consume` answers the updated token row with its log id, or
 * null when this redemption did not consume a use, and the caller finds out why exactly as after the per-request
 * statement (the refusal statement, which also notices a use that is still there and retries, alone). A batch never
 * waits for a row lock: a token locked elsewhere (another batch, a revocation) is skipped and its redemption retries
 * alone, so one busy token cannot hold up the others. Redemptions with an idempotency key keep the per-request
 * statement (their key row may conflict, and that must fail alone).
 */
export interface RedeemBatcher {
  /** A redemption without an idempotency key: the token row with its log id, or null when it consumed no use. */
  consume(values: RedemptionValues): Promise<RedeemedRow | null>;
  /** Counts since start: statements run, and redemptions that shared one with others. */
  readonly stats: { statements: number; batched: number };
  /** Gives back the connection held for lone redemptions (before the pool ends). */
  close(): void;
}

/** `maxBatch` 1 turns batching off. */
export type RedeemBatchOptions = MicroBatchOptions;

/** A lone redemption still running after this many milliseconds gives its batch slot back (micro-batch.ts). */
export const LONE_RELEASE_MS = 25;

/** A redemption waited longer than `waitTimeoutMs` for a batch statement; answered as POOL_EXHAUSTED. */
export class RedeemQueueTimeout extends Error {
  override readonly name = 'RedeemQueueTimeout';
  constructor(waitedMs: number) {
    super(`no batch connection came free within ${waitedMs} ms`);
  }
}

// The per-redemption columns of the batch's input rows, named as the rules' parameters (JSON travels as text).
const inputColumns = Object.entries(PER_REDEMPTION_PARAMS)
  .map(([name, type]) => `"${name}" ${type === 'jsonb' ? 'text' : type}`)
  .join(', ');
// The rules' placeholders bound to the batch row `i` (per redemption) or left to the statement (shared).
const perRow = (name: string) =>
  name in PER_REDEMPTION_PARAMS
    ? `i."${name}"${PER_REDEMPTION_PARAMS[name as keyof typeof PER_REDEMPTION_PARAMS] === 'jsonb' ? '::jsonb' : ''}`
    : `:${name}`;

// One row per redemption; a token named twice takes part once (the first), the others get no row and retry alone.
// Every check of the rules (redemption-rules.ts) runs in a SELECT … FOR UPDATE SKIP LOCKED: a row locked by another
// transaction is skipped, not waited for (so batches cannot deadlock either), and the rows it returns are locked, so
// their checks stay true until the commit. Then the same UPDATE and log INSERT as REDEEM_SQL, for all at once; answers
// are matched back by `n`. :ids holds the token ids: rows are found by primary key whatever the planner thinks of the
// JSON's row count (it assumes 100; joining on the JSON alone it chose sequential scans, or the scope index).
export const REDEEM_BATCH_SQL = namedStatement(
  'redeem-batch',
  `with input as (
    select * from json_to_recordset(:batch) as r(n int, ${inputColumns})
  ), first as (
    select distinct on ("tokenId") * from input order by "tokenId", n
  ), eligible as (
    select t.id, i.n, i."userId", i."clientIp", i."userAgent"
    from request_token t join first i on i."tokenId" = t.id
    where t.id = any(:ids) and ${bindPlaceholders(redeemableSql('t'), perRow)}
    for update of t skip locked
  ), used as (
    update request_token t set used_to_date = t.used_to_date + 1
    where t.id = any(:ids) and t.id in (select id from eligible)
    returning ${tokenFields('t')}
  ), log as (
    insert into request_token_log (token_id, user_id, client_ip, user_agent, client_id)
    select used.id, e."userId", e."clientIp", e."userAgent", used.client_id from used join eligible e on e.id = used.id
    returning id as log_id, token_id
  )
  select ${tokenColumns('used')}, e.n, log.log_id from used join eligible e on e.id = used.id join log on log.token_id = used.id`,
  { batch: 'json', ids: 'bigint[]', ...SHARED_PARAMS },
);

/** A batch row: the redemption's parameters, as the batch's input columns take them. */
const batchRow = (values: RedemptionValues, n: number) => {
  const row: Record<string, unknown> = { n };
  for (const [name, type] of Object.entries(PER_REDEMPTION_PARAMS)) {
    row[name] = sqlValue(type, values[name as keyof typeof PER_REDEMPTION_PARAMS]);
  }
  return row;
};

/**
 * `pool`: the batch connections. `lonePool`: where a redemption that finds a slot free runs alone (the per-request
 * connections; `pool` itself when not given, with REDEEM_ALONE_SQL, which never waits on a row lock there).
 */
export function createRedeemBatcher(pool: pg.Pool, options: RedeemBatchOptions, lonePool?: pg.Pool): RedeemBatcher {
  const redeemWith = (statement: typeof REDEEM_SQL, on = pool) => async (values: RedemptionValues) =>
    (await queryPrepared<RedeemedRow>(on, statement.bind(values))).rows[0] ?? null;
  const single = redeemWith(REDEEM_SQL);
  // A queued redemption alone on a batch connection: it skips a locked row.
  const alone = redeemWith(REDEEM_ALONE_SQL);
  // A lone click (a slot was free): the per-request statement, on a per-request connection held for lone clicks
  // while they come (held-connection.ts).
  const held = lonePool ? holdConnection(lonePool) : null;
  const lone = held
    ? async (values: RedemptionValues) => (await held.query<RedeemedRow>(REDEEM_SQL.bind(values))).rows[0] ?? null
    : alone;

  async function run(batch: Waiting<RedemptionValues, RedeemedRow | null>[]): Promise<void> {
    if (batch.length === 1) {
      const [one] = batch;
      await alone(one.values).then(one.resolve, one.reject);
      return;
    }
    let rows: (RedeemedRow & { n: number })[];
    try {
      ({ rows } = await queryPrepared<RedeemedRow & { n: number }>(
        pool,
        REDEEM_BATCH_SQL.bind({
          batch: batch.map((one, n) => batchRow(one.values, n)),
          ids: batch.map((one) => one.values.tokenId),
          // Configuration: the same for all.
          tolerance: batch[0].values.tolerance,
        }),
      ));
    } catch (error) {
      return answerFailedBatch(batch, error, single);
    }
    const byIndex = new Map(rows.map((row) => [row.n, row]));
    batch.forEach((one, n) => one.resolve(byIndex.get(n) ?? null));
  }

  const batcher = createMicroBatcher(options, run, (waitedMs) => new RedeemQueueTimeout(waitedMs), lone);
  return { stats: batcher.stats, consume: batcher.submit, close: () => held?.close() };
}

/** The batcher on the database's batch connections, or null when batching is off (REDEEM_BATCH_MAX=1). */
export const redeemBatcherFor = (
  db: { pool: pg.Pool; batchPool: pg.Pool | null },
  config: { redeemBatchMax: number; dbPoolTimeoutMs: number },
): RedeemBatcher | null =>
  db.batchPool && config.redeemBatchMax > 1
    ? createRedeemBatcher(
        db.batchPool,
        {
          slots: db.batchPool.options.max,
          maxBatch: config.redeemBatchMax,
          waitTimeoutMs: config.dbPoolTimeoutMs,
          releaseAfterMs: LONE_RELEASE_MS,
        },
        db.pool,
      )
    : null;
