import type pg from 'pg';
import { queryPrepared } from '../database/prepared-query.js';
import { answerFailedBatch, createMicroBatcher, type MicroBatchOptions, type Waiting } from './micro-batch.js';
import { namedStatement, sqlValue, type SqlType } from './named-sql.js';
import { ISSUE_PARAMS, ISSUE_SQL, tokenColumns, type TokenRow } from './tokens.js';

/**
 * Micro-batching of createRequestToken (the queue is micro-batch.ts's, shared with redemptions): while every statement
 * slot is busy, the next free slot stores all issues that wait (up to `maxBatch`) with one INSERT and one commit, where
 * the per-request path spends a round trip, a plan execution and a commit (a WAL flush) on each. With a slot free
 * (low load) an issue runs at once, alone, with ISSUE_SQL: a lone call waits for nothing.
 *
 * Each issue is answered with its own row, or null when the checks against the present (made on the database clock,
 * as ISSUE_SQL makes them) refused its input; the caller then says which check failed, as after ISSUE_SQL. If
 * PostgreSQL refuses the batch statement (a bad value, a statement timeout), nothing of it was stored, and each issue
 * runs again alone, so an error reaches only the request it belongs to. Any other failure (no connection, the
 * connection lost, perhaps after the commit) is every member's answer as it is: running them again could store a
 * token twice.
 */
export interface IssueBatcher {
  /** Stores one token: its row, or null when a check against the present refused the input. */
  issue(values: IssueValues): Promise<TokenRow | null>;
  /** Counts since start: statements run, and issues that shared one with others. */
  readonly stats: { statements: number; batched: number };
}

/** ISSUE_SQL's parameters. */
export type IssueValues = Record<keyof typeof ISSUE_PARAMS, unknown>;

/** `maxBatch` 1 turns batching off (every issue runs ISSUE_SQL). */
export type IssueBatchOptions = MicroBatchOptions;

/** An issue waited longer than `waitTimeoutMs` for a statement; answered as POOL_EXHAUSTED (db-errors.ts). */
export class IssueQueueTimeout extends Error {
  override readonly name = 'IssueQueueTimeout';
  constructor(waitedMs: number) {
    super(`no connection came free for issuing within ${waitedMs} ms`);
  }
}

// The same for every member of a batch (configuration): left to the statement, not to each row.
const SHARED = ['sessionMinutes', 'tolerance'] as const;
const PER_ISSUE = Object.entries(ISSUE_PARAMS).filter(([name]) => !(SHARED as readonly string[]).includes(name)) as [
  keyof typeof ISSUE_PARAMS,
  SqlType,
][];
// JSON travels as text in the batch's rows.
const inputColumns = PER_ISSUE.map(([name, type]) => `"${name}" ${type === 'jsonb' ? 'text' : type}`).join(', ');

// One row per issue. Ids are drawn from the sequence in the statement (in input order), so each stored row is matched
// back to its input by id, and an input that fails a check simply stores no row. The checks and the default session
// expiry are ISSUE_SQL's, row by row.
export const ISSUE_BATCH_SQL = namedStatement(
  'issue-batch',
  `with input as (
    select r.*, coalesce(r."expiresAt", case when r."loginMode" = 'SESSION' then now() + make_interval(mins => :sessionMinutes) end)
      as expiry
    from json_to_recordset(:batch) as r(n int, ${inputColumns})
  ), accepted as (
    select nextval('request_token_id_seq'::regclass) as id, i.*
    from (select * from input
      where (expiry is null or expiry > now()) and ("notBefore" is null or expiry is null or "notBefore" < expiry)
      order by n) i
  ), stored as (
    insert into request_token
    (id, scope, target_url, target_host, target_path, target_params, user_id, login_mode, data, max_uses, not_before,
     expires_at, client_id, kid)
    select id, scope, "targetUrl", host, path, params::jsonb, "userId", "loginMode", data::jsonb, "maxUses", "notBefore",
      expiry, "clientId", kid
    from accepted
    returning ${tokenColumns()}
  )
  select stored.*, accepted.n from stored join accepted on accepted.id = stored.id`,
  { batch: 'json', sessionMinutes: 'int', tolerance: 'int' },
);

export function createIssueBatcher(pool: pg.Pool, options: IssueBatchOptions): IssueBatcher {
  const single = async (values: IssueValues) =>
    (await queryPrepared<TokenRow>(pool, ISSUE_SQL.bind(values))).rows[0] ?? null;

  async function run(batch: Waiting<IssueValues, TokenRow | null>[]): Promise<void> {
    if (batch.length === 1) {
      const [one] = batch;
      await single(one.values).then(one.resolve, one.reject);
      return;
    }
    let rows: (TokenRow & { n: number })[];
    try {
      ({ rows } = await queryPrepared<TokenRow & { n: number }>(
        pool,
        ISSUE_BATCH_SQL.bind({
          batch: batch.map((one, n) => {
            const row: Record<string, unknown> = { n };
            for (const [name, type] of PER_ISSUE) row[name] = sqlValue(type, one.values[name]);
            return row;
          }),
          sessionMinutes: batch[0].values.sessionMinutes,
          tolerance: batch[0].values.tolerance,
        }),
      ));
    } catch (error) {
      return answerFailedBatch(batch, error, single);
    }
    const byIndex = new Map(rows.map((row) => [row.n, row]));
    batch.forEach((one, n) => {
      const row = byIndex.get(n);
      if (row) delete (row as { n?: number }).n;
      one.resolve(row ?? null);
    });
  }

  const batcher = createMicroBatcher(options, run, (waitedMs) => new IssueQueueTimeout(waitedMs), single);
  return { stats: batcher.stats, issue: batcher.submit };
}

/** The batcher on the database's batch connections, or null when issue batching is off (ISSUE_BATCH_MAX=1). */
export const issueBatcherFor = (
  db: { batchPool: pg.Pool | null },
  config: { issueBatchMax: number; dbPoolTimeoutMs: number },
): IssueBatcher | null =>
  db.batchPool && config.issueBatchMax > 1
    ? createIssueBatcher(db.batchPool, {
        slots: db.batchPool.options.max,
        maxBatch: config.issueBatchMax,
        waitTimeoutMs: config.dbPoolTimeoutMs,
      })
    : null;
