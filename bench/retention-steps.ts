// Where retention's time goes, statement by statement, on a database of your own (e.g. the large one that
// `BENCH_SCALE_KEEP=1 npm run bench:scale` keeps): runs truncateLogs with the given policy and prints each statement it
// sent (its first words), its time and its row count, then the totals by kind. It deletes rows for real.
// Run: RETENTION_DATABASE_URL=postgres://… npx tsx bench/retention-steps.ts --max-days 28 [--max-count N] [--batch-size N]
// [--connections N] (the cut-through's, TruncateOptions.connections)
import { parseArgs } from 'node:util';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { truncateLogs as current } from '../server/domain/log-retention.js';

const { values } = parseArgs({
  options: { 'max-days': { type: 'string' }, 'max-count': { type: 'string' }, 'batch-size': { type: 'string' }, connections: { type: 'string' } },
});
const url = process.env.RETENTION_DATABASE_URL;
if (!url) throw new Error('set RETENTION_DATABASE_URL');
const number = (v: string | undefined) => (v === undefined ? null : Number(v));

const timings: { text: string; ms: number; rows: number | null }[] = [];
const query = pg.Client.prototype.query;
pg.Client.prototype.query = function (this: pg.Client, config: any, ...rest: any[]) {
  const text: string = (typeof config === 'string' ? config : config?.text ?? '').replace(/\s+/g, ' ').trim();
  const started = performance.now();
  const result = (query as any).call(this, config, ...rest);
  if (result && typeof result.then === 'function') {
    result.then(
      (r: pg.QueryResult) => timings.push({ text, ms: performance.now() - started, rows: r?.rowCount ?? null }),
      () => timings.push({ text: `(failed) ${text}`, ms: performance.now() - started, rows: null }),
    );
  }
  return result;
} as typeof query;

// RETENTION_OLD=path: compare with another version of the module (e.g. the previous commit's, copied beside it).
const truncateLogs: typeof current = process.env.RETENTION_OLD ? (await import(process.env.RETENTION_OLD)).truncateLogs : current;
const pool = new pg.Pool({ connectionString: url, max: 4 });
// pool.query hands its client a callback (no promise to time above): time it here.
const poolQuery = pool.query.bind(pool) as (text: string, values?: unknown[]) => Promise<pg.QueryResult>;
pool.query = (async (text: string, values?: unknown[]) => {
  const started = performance.now();
  try {
    const result = await poolQuery(text, values);
    timings.push({ text: text.replace(/\s+/g, ' ').trim(), ms: performance.now() - started, rows: result.rowCount ?? null });
    return result;
  } catch (error) {
    timings.push({ text: `(failed) ${text.replace(/\s+/g, ' ').trim()}`, ms: performance.now() - started, rows: null });
    throw error;
  }
}) as typeof pool.query;
try {
  const started = performance.now();
  const result = await truncateLogs(pool, {
    maxDays: number(values['max-days']),
    maxCount: number(values['max-count']),
    batchSize: number(values['batch-size']),
  }, { connections: number(values.connections) ?? undefined });
  const total = performance.now() - started;
  const kinds = new Map<string, { n: number; ms: number }>();
  for (const t of timings) {
    const kind = t.text.slice(0, 48);
    const k = kinds.get(kind) ?? { n: 0, ms: 0 };
    k.n++;
    k.ms += t.ms;
    kinds.set(kind, k);
  }
  for (const [kind, k] of [...kinds].sort((a, b) => b[1].ms - a[1].ms)) {
    console.log(`${k.ms.toFixed(1).padStart(9)} ms ${String(k.n).padStart(4)} × ${kind}`);
  }
  const slowest = timings.map((t, i) => ({ ...t, i })).sort((a, b) => b.ms - a.ms).slice(0, 5);
  for (const t of slowest) console.log(`slowest: #${t.i} ${t.ms.toFixed(1)} ms ${t.rows ?? ''} ${t.text.slice(0, 60)}`);
  console.log(
    `truncateLogs: ${result.count} rows (${result.oldest?.toISOString()} … ${result.newest?.toISOString()}) in ` +
      `${total.toFixed(0)} ms; load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`,
  );
} finally {
  await pool.end();
}
