import pg from 'pg';
import { namedStatement, sqlValue, type SqlType } from './named-sql.js';
import { ISSUE_PARAMS, ISSUE_SQL, tokenColumns, type TokenRow } from './tokens.js';

/**
 * Micro-batching of createRequestToken, as redemptions are batched (redeem-batch.ts). While every statement slot is
 * busy, issues wait here, and the next free slot stores all that wait (up to `maxBatch`) with one INSERT and one
 * commit, where the per-request path spends a round trip, a plan execution and a commit (a WAL flush) on each. With a
 * slot free (low load) an issue runs at once, alone, with ISSUE_SQL: a lone call waits for nothing.
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

export interface IssueBatchOptions {
  /** Statements in flight at most; issues beyond wait here, where they are batched. */
  slots: number;
  /** Issues per statement at most. 1 turns batching off (every issue runs ISSUE_SQL). */
  maxBatch: number;
  /** How long an issue may wait for a statement to take it (DB_POOL_TIMEOUT_MS); then 503 POOL_EXHAUSTED. */
  waitTimeoutMs: number;
}

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

interface Waiting {
  values: IssueValues;
  since: number;
  resolve(row: TokenRow | null): void;
  reject(error: unknown): void;
}

export function createIssueBatcher(pool: pg.Pool, options: IssueBatchOptions): IssueBatcher {
  const queue: Waiting[] = [];
  let busy = 0;
  const stats = { statements: 0, batched: 0 };
  let sweeper: NodeJS.Timeout | null = null;
  const sweep = () => {
    const now = performance.now();
    let expired = 0;
    while (expired < queue.length && now - queue[expired].since > options.waitTimeoutMs) expired++;
    if (expired > 0) for (const one of queue.splice(0, expired)) one.reject(new IssueQueueTimeout(options.waitTimeoutMs));
    if (queue.length === 0 && sweeper) {
      clearInterval(sweeper);
      sweeper = null;
    }
  };

  const single = async (values: IssueValues) =>
    (await pool.query<TokenRow>({ name: ISSUE_SQL.name, text: ISSUE_SQL.text, values: ISSUE_SQL.values(values) })).rows[0] ??
    null;

  async function run(batch: Waiting[]): Promise<void> {
    if (batch.length === 1) {
      const [one] = batch;
      await single(one.values).then(one.resolve, one.reject);
      return;
    }
    let rows: (TokenRow & { n: number })[];
    try {
      ({ rows } = await pool.query<TokenRow & { n: number }>({
        name: ISSUE_BATCH_SQL.name,
        text: ISSUE_BATCH_SQL.text,
        values: ISSUE_BATCH_SQL.values({
          batch: batch.map((one, n) => {
            const row: Record<string, unknown> = { n };
            for (const [name, type] of PER_ISSUE) row[name] = sqlValue(type, one.values[name]);
            return row;
          }),
          sessionMinutes: batch[0].values.sessionMinutes,
          tolerance: batch[0].values.tolerance,
        }),
      }));
    } catch (error) {
      // Rolled back: nothing of the batch was stored, so each runs again alone and only its own error reaches it.
      if (!(error instanceof pg.DatabaseError)) {
        for (const one of batch) one.reject(error);
        return;
      }
      await Promise.all(batch.map((one) => single(one.values).then(one.resolve, one.reject)));
      return;
    }
    const byIndex = new Map(rows.map((row) => [row.n, row]));
    batch.forEach((one, n) => {
      const row = byIndex.get(n);
      if (row) delete (row as { n?: number }).n;
      one.resolve(row ?? null);
    });
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
    issue(values) {
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
