// `npx tsx bench/statement-cost.ts`: PostgreSQL's side of a redemption, one connection, statements run back to back:
// the per-request statement (REDEEM_SQL), what a batch of one runs on a batch connection (REDEEM_ALONE_SQL; a lone click runs REDEEM_SQL),
// and the micro-batch statement (REDEEM_BATCH_SQL) with one redemption and with 20 (its cost per redemption). On an embedded PostgreSQL
// of its own, 20,000 tokens; the table is analysed first, as autovacuum does in service. See docs/hot-path.md.
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../server/config.js';
import { initDatabase } from '../server/database/db.js';
import { startEmbeddedDatabase } from '../server/database/embedded-db.js';
import { REDEEM_ALONE_SQL, REDEEM_SQL } from '../server/domain/redeem.js';
import { REDEEM_BATCH_SQL } from '../server/domain/redeem-batch.js';
import { freePort } from '../test/support/ports.js';

const dir = await mkdtemp(join(tmpdir(), 'rt-statement-cost-'));
await chmod(dir, 0o755);
const cluster = await startEmbeddedDatabase({ dir: join(dir, 'pg'), port: await freePort(), persistent: false });
const db = await initDatabase(cluster.url, loadConfig({ DATABASE_URL: cluster.url, REQUEST_TOKEN_SECRET: 'x'.repeat(40) }));
if (!db.batchPool) throw new Error('micro-batching is off (REDEEM_BATCH_MAX=1)');
try {
  const { rows } = await db.pool.query(
    `insert into request_token (scope, max_uses, client_id)
     select 'bench', 1000000000, 1 from generate_series(1, 20000) returning id::text`,
  );
  const ids: string[] = rows.map((r) => r.id);
  await db.pool.query('analyze');
  // Each statement on the connections the service runs it on: REDEEM_SQL on the hot-path pool, the batch statement
  // on the batch connections (generic plans).
  const client = await db.pool.connect();
  const batchClient = await db.batchPool.connect();
  const values = (id: string) => ({
    tokenId: id, scope: 'bench', host: null, path: null, params: {}, userId: null, tenant: null, kid: 'default',
    clientIp: '198.51.100.1', userAgent: 'Mozilla/5.0', tolerance: 0, key: null, fingerprint: null,
  });
  const batch = (batchIds: string[]) =>
    batchClient.query({
      name: REDEEM_BATCH_SQL.name,
      text: REDEEM_BATCH_SQL.text,
      values: REDEEM_BATCH_SQL.values({
        batch: batchIds.map((id, n) => ({ n, ...values(id), params: '{}' })),
        ids: batchIds,
        tolerance: 0,
      }),
    });
  const kinds: [string, number, (at: number) => Promise<{ rows: unknown[] }>][] = [
    ['REDEEM_SQL', 1, (at) =>
      client.query({ name: REDEEM_SQL.name, text: REDEEM_SQL.text, values: REDEEM_SQL.values(values(ids[at % ids.length])) })],
    ['REDEEM_ALONE_SQL (a batch of one on a batch connection)', 1, (at) =>
      batchClient.query({
        name: REDEEM_ALONE_SQL.name,
        text: REDEEM_ALONE_SQL.text,
        values: REDEEM_ALONE_SQL.values(values(ids[at % ids.length])),
      })],
    ['REDEEM_BATCH_SQL, 1 redemption', 1, (at) => batch([ids[at % ids.length]])],
    ['REDEEM_BATCH_SQL, 20 redemptions', 20, (at) => batch(Array.from({ length: 20 }, (_, k) => ids[(at * 20 + k) % ids.length]))],
  ];
  for (let round = 1; round <= 3; round++) {
    for (const [name, size, run] of kinds) {
      for (let i = 0; i < 100; i++) await run(i);
      const statements = Math.round(3000 / size);
      const started = performance.now();
      for (let i = 0; i < statements; i++) {
        if ((await run(i * 7)).rows.length !== size) throw new Error(`${name}: not every redemption consumed a use`);
      }
      const perRedemption = ((performance.now() - started) * 1000) / (statements * size);
      process.stdout.write(`round ${round} ${name}: ${perRedemption.toFixed(0)} µs per redemption\n`);
    }
  }
  client.release();
  batchClient.release();
} finally {
  await db.close();
  await cluster.stop();
  await rm(dir, { recursive: true, force: true });
}
