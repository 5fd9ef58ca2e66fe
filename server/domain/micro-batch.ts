import pg from 'pg';
import { commitOutcomeUnknown } from '../database/db-errors.js';

/**
 * The queue that redemptions (redeem-batch.ts) and issues (issue-batch.ts) share statements through. While every
 * statement slot is busy, calls wait here; the next free slot takes all that wait (up to `maxBatch`) in one call of
 * `run`. With a slot free (low load) a call runs at once, alone (a batch of one): a lone call waits for nothing.
 *
 * A call that waited longer than `waitTimeoutMs` for a slot is rejected with the error `timeout` makes (answered as
 * 503 POOL_EXHAUSTED, like a request that found no free connection), rather than queueing behind a stalled database.
 */
export interface MicroBatchOptions {
  /** Statements in flight at most (the pool's connections); calls beyond wait here, where they are batched. */
  slots: number;
  /** Calls per statement at most. */
  maxBatch: number;
  /** How long a call may wait for a statement to take it (DB_POOL_TIMEOUT_MS). */
  waitTimeoutMs: number;
  /**
   * A lone call (`alone`) still running after this long gives its slot back and goes on uncounted, so that a call stuck
   * behind a row lock or a slow statement holds up no other. Checked when a call has to wait, and while calls wait.
   * Unset: a lone call holds its slot until it ends (for an `alone` that runs on the batch connections themselves).
   */
  releaseAfterMs?: number;
}

/** A call waiting for (or taken into) a batch. */
export interface Waiting<In, Out> {
  values: In;
  since: number;
  resolve(answer: Out): void;
  reject(error: unknown): void;
}

export interface MicroBatcher<In, Out> {
  submit(values: In): Promise<Out>;
  /** Counts since start: statements run, and calls that shared one with others. */
  readonly stats: { statements: number; batched: number };
}

export function createMicroBatcher<In, Out>(
  options: MicroBatchOptions,
  /** Answers every member of `batch` (resolve or reject each); batches of one included. */
  run: (batch: Waiting<In, Out>[]) => Promise<void>,
  timeout: (waitedMs: number) => Error,
  /**
   * One call's statement, as `run` runs a batch of one. With it, a call that finds a slot free and nobody waiting
   * (low load: every call) runs it at once, without the queue's bookkeeping (its waiting entry, a promise around it).
   */
  alone?: (values: In) => Promise<Out>,
): MicroBatcher<In, Out> {
  const queue: Waiting<In, Out>[] = [];
  let busy = 0;
  // Lone calls that still hold a slot, with their start.
  const lone = new Set<{ since: number }>();
  const releaseStuck = () => {
    if (options.releaseAfterMs === undefined || lone.size === 0) return;
    const now = performance.now();
    for (const running of lone) {
      if (now - running.since < options.releaseAfterMs) continue;
      lone.delete(running);
      busy--;
    }
  };
  const stats = { statements: 0, batched: 0 };
  // While calls wait, the oldest are checked against the deadline (the queue is in arrival order).
  let sweeper: NodeJS.Timeout | null = null;
  const sweep = () => {
    const now = performance.now();
    let expired = 0;
    while (expired < queue.length && now - queue[expired].since > options.waitTimeoutMs) expired++;
    if (expired > 0) for (const one of queue.splice(0, expired)) one.reject(timeout(options.waitTimeoutMs));
    releaseStuck();
    pump();
    if (queue.length === 0 && sweeper) {
      clearInterval(sweeper);
      sweeper = null;
    }
  };

  function pump(): void {
    while (busy < options.slots && queue.length > 0) {
      const batch = queue.splice(0, options.maxBatch);
      busy++;
      stats.statements++;
      if (batch.length > 1) stats.batched += batch.length;
      void run(batch).finally(done);
    }
  }

  const done = () => {
    busy--;
    pump();
  };

  return {
    stats,
    submit(values) {
      if (alone && queue.length === 0 && busy < options.slots) {
        busy++;
        stats.statements++;
        const answer = alone(values);
        if (options.releaseAfterMs === undefined) {
          answer.then(done, done);
        } else {
          const running = { since: performance.now() };
          lone.add(running);
          // Its slot back, unless it was given back already (releaseStuck).
          const finished = () => {
            if (lone.delete(running)) done();
          };
          answer.then(finished, finished);
        }
        return answer;
      }
      return new Promise<Out>((resolve, reject) => {
        queue.push({ values, since: performance.now(), resolve, reject });
        releaseStuck();
        pump();
        if (queue.length > 0 && !sweeper) {
          sweeper = setInterval(sweep, Math.max(10, Math.min(100, options.waitTimeoutMs / 4)));
          sweeper.unref();
        }
      });
    },
  };
}

/**
 * What a batch statement's failure means for its members. PostgreSQL refused the statement (one bad value, a statement
 * timeout): it was rolled back, nothing of it was stored, and each member runs again alone (`alone`), so an error
 * reaches only the call it belongs to. Anything else (no connection came free, the connection was lost, perhaps after
 * the commit; on Citus also PostgreSQL's own report that a worker went away during the commit, commitOutcomeUnknown)
 * is every member's answer as it is: running them again could not help, or could store or count twice.
 */
export async function answerFailedBatch<In, Out>(
  batch: Waiting<In, Out>[],
  error: unknown,
  alone: (values: In) => Promise<Out>,
): Promise<void> {
  if (!(error instanceof pg.DatabaseError) || commitOutcomeUnknown(error)) {
    for (const one of batch) one.reject(error);
    return;
  }
  await Promise.all(batch.map((one) => alone(one.values).then(one.resolve, one.reject)));
}
