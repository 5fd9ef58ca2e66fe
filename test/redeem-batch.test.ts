import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transientReason } from '../server/database/db-errors.js';
import { createRedeemBatcher, RedeemQueueTimeout } from '../server/domain/redeem-batch.js';
import type { RedemptionValues } from '../server/domain/redeem.js';
import { startTestServer, type TestServer } from './support/harness.js';
import { issue, redeem, tokenState } from './support/operations.js';

// DB_POOL_SIZE=3: one connection of it for batched redemptions (a third), so concurrent ones are batched for sure.
let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ DB_POOL_SIZE: '3' });
});
afterAll(() => server?.close());

/** A plain redemption's parameters (no URL, user, tenant or idempotency key). */
const values = (tokenId: string, userAgent: string, scope = 'batch'): RedemptionValues => ({
  tokenId, scope, host: null, path: null, params: {}, userId: null, tenant: null, kid: 'default', clientIp: '198.51.100.1', userAgent,
  tolerance: 0, key: null, fingerprint: null,
});

describe('micro-batched redemptions', () => {
  it('run on connections of their own, taken from DB_POOL_SIZE, whose statements use a generic plan', async () => {
    const { pool, batchPool } = server.db;
    expect([pool.options.max, batchPool!.options.max]).toEqual([2, 1]);
    const setting = async (p: typeof pool) => (await p.query(`select current_setting('plan_cache_mode') as m`)).rows[0].m;
    expect(await setting(batchPool!)).toBe('force_generic_plan');
    expect(await setting(pool)).toBe('auto');
  });

  it('share statements under load and answer every redemption with its own token and log row', async () => {
    const tokens = await Promise.all(Array.from({ length: 50 }, () => issue(server, { scope: 'batch', maxUses: 3 })));
    const before = { ...server.services.redeemBatcher!.stats };
    const requests = tokens.flatMap(({ jwt, token }, t) =>
      Array.from({ length: 4 }, (_, k) => ({ tokenId: token.id, input: { jwt, scope: 'batch', userAgent: `agent ${t}-${k}` } })),
    );
    const results = await Promise.all(requests.map(({ input }) => redeem(server, input)));

    const stats = server.services.redeemBatcher!.stats;
    expect(stats.batched - before.batched).toBeGreaterThan(0);
    expect(stats.statements - before.statements).toBeLessThan(requests.length);

    for (const [t, { token }] of tokens.entries()) {
      const mine = results.slice(t * 4, t * 4 + 4);
      const redeemed = mine.filter((r) => r.__typename === 'Redemption');
      expect(redeemed, JSON.stringify(mine)).toHaveLength(3);
      expect(mine.filter((r) => r.code === 'MAX_USES_EXCEEDED')).toHaveLength(1);
      expect(redeemed.every((r) => r.token.id === token.id)).toBe(true);
      expect(redeemed.map((r) => r.usesRemaining).sort()).toEqual([0, 1, 2]);
      const state = await tokenState(server, token.id);
      expect(state.usedToDate).toBe(3);
      expect(state.logs).toHaveLength(4);
      // Each success's log row is this request's: its token, its user agent.
      for (const [k, r] of mine.entries()) {
        if (r.__typename !== 'Redemption') continue;
        const row = state.logs.find((l) => String(l.id) === r.id);
        expect(row).toMatchObject({ error_code: null, user_agent: `agent ${t}-${k}` });
      }
    }
  });

  it('skips a token locked elsewhere instead of waiting for it, and that redemption then waits alone', async () => {
    const [locked, a, b] = await Promise.all([0, 1, 2].map(() => issue(server, { scope: 'batch', maxUses: 5 })));
    const batcher = createRedeemBatcher(server.services.pool, { slots: 1, maxBatch: 64, waitTimeoutMs: 5_000 });
    const holder = new pg.Client({ connectionString: server.databaseUrl });
    await holder.connect();
    try {
      await holder.query('begin');
      await holder.query('select * from request_token where id = $1 for update', [locked.token.id]);
      const started = Date.now();
      const rows = await Promise.all([locked, a, b].map(({ token }) => batcher.consume(values(token.id, 'x'))));
      expect(Date.now() - started).toBeLessThan(server.config.dbLockTimeoutMs);
      expect(rows[0]).toBeNull();
      expect(rows.slice(1).map((r) => String(r!.id))).toEqual([a.token.id, b.token.id]);

      // Through the service: the skipped redemption retries on its own and waits for the row.
      const pending = redeem(server, { jwt: locked.jwt, scope: 'batch' });
      const early = await Promise.race([pending.then(() => 'answered'), new Promise((r) => setTimeout(r, 300, 'waiting'))]);
      expect(early).toBe('waiting');
      await holder.query('commit');
      expect(await pending).toMatchObject({ __typename: 'Redemption', usesRemaining: 4 });
    } finally {
      await holder.end();
    }
  });

  it('runs a lone redemption on the per-request connections; stuck behind a row lock, it gives its slot back', async () => {
    const [locked, a, b] = await Promise.all([0, 1, 2].map(() => issue(server, { scope: 'batch', maxUses: 5 })));
    // As the service builds it: one slot (the one batch connection), lone redemptions on the per-request pool.
    const batcher = createRedeemBatcher(
      server.db.batchPool!,
      { slots: 1, maxBatch: 64, waitTimeoutMs: 5_000, releaseAfterMs: 50 },
      server.services.pool,
    );
    const holder = new pg.Client({ connectionString: server.databaseUrl });
    await holder.connect();
    try {
      await holder.query('begin');
      await holder.query('select * from request_token where id = $1 for update', [locked.token.id]);
      // Alone, with the per-request statement: it waits for the row (a batch connection would have skipped it).
      const first = batcher.consume(values(locked.token.id, 'lone'));
      const started = Date.now();
      // These find the slot taken and wait; once the lone one has run 50 ms, its slot is given back and they share
      // a statement on the batch connection, which skips nothing here.
      const others = await Promise.all([a, b].map(({ token }) => batcher.consume(values(token.id, 'x'))));
      expect(Date.now() - started).toBeLessThan(server.config.dbLockTimeoutMs);
      expect(others.map((r) => String(r!.id))).toEqual([a.token.id, b.token.id]);
      expect(await Promise.race([first.then(() => 'answered'), new Promise((r) => setTimeout(r, 100, 'waiting'))])).toBe('waiting');
      await holder.query('commit');
      expect(String((await first)!.id)).toBe(locked.token.id);
      expect((await tokenState(server, locked.token.id)).usedToDate).toBe(1);
    } finally {
      batcher.close();
      await holder.end();
    }
  });

  it('fails redemptions that waited too long for a statement as POOL_EXHAUSTED, and the one running still finishes', async () => {
    const [a, b, c] = await Promise.all([0, 1, 2].map(() => issue(server, { scope: 'batch', maxUses: 1 })));
    const batcher = createRedeemBatcher(server.services.pool, { slots: 1, maxBatch: 64, waitTimeoutMs: 200 });
    const holder = new pg.Client({ connectionString: server.databaseUrl });
    await holder.connect();
    try {
      // The whole table locked: the statement that takes the one slot waits for it.
      await holder.query('begin');
      await holder.query('lock table request_token in access exclusive mode');
      const started = Date.now();
      const first = batcher.consume(values(a.token.id, 'a'));
      const waiting = await Promise.allSettled([b, c].map(({ token }) => batcher.consume(values(token.id, 'x'))));
      expect(Date.now() - started).toBeLessThan(1_000);
      for (const outcome of waiting) {
        expect(outcome.status).toBe('rejected');
        const error = (outcome as PromiseRejectedResult).reason;
        expect(error).toBeInstanceOf(RedeemQueueTimeout);
        expect(transientReason(error)).toBe('POOL_EXHAUSTED');
      }
      await holder.query('rollback');
      expect(String((await first)!.id)).toBe(a.token.id);
    } finally {
      await holder.end();
    }
    for (const [token, used] of [[b.token.id, 0], [c.token.id, 0], [a.token.id, 1]] as const) {
      expect((await tokenState(server, token)).usedToDate).toBe(used);
    }
  });

  it('runs each redemption of a failed batch alone, so that an error reaches only its own request', async () => {
    const [a, b, c] = await Promise.all([0, 1, 2].map(() => issue(server, { scope: 'batch', maxUses: 1 })));
    const batcher = createRedeemBatcher(server.services.pool, { slots: 1, maxBatch: 64, waitTimeoutMs: 5_000 });
    // The first runs at once, alone; the other three wait and share a statement, which fails on the id out of range.
    const outcomes = await Promise.allSettled([
      batcher.consume(values(a.token.id, 'a')),
      batcher.consume(values('99999999999999999999', 'bad')),
      batcher.consume(values(b.token.id, 'b')),
      batcher.consume(values(c.token.id, 'c')),
    ]);
    expect(batcher.stats).toEqual({ statements: 2, batched: 3 });
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    const ids = outcomes.map((o) => (o.status === 'fulfilled' ? String(o.value?.id) : null));
    expect(ids).toEqual([a.token.id, null, b.token.id, c.token.id]);
    for (const { token } of [a, b, c]) expect((await tokenState(server, token.id)).usedToDate).toBe(1);
  });
});
