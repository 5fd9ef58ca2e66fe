import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transientReason } from '../server/database/db-errors.js';
import { createIssueBatcher, IssueQueueTimeout, type IssueValues } from '../server/domain/issue-batch.js';
import { startTestServer, type TestServer } from './support/harness.js';
import { CREATE } from './support/operations.js';

// DB_POOL_SIZE=3: one connection of it for batched statements (a third), so concurrent issues are batched for sure.
let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ DB_POOL_SIZE: '3' });
});
afterAll(() => server?.close());

/** ISSUE_SQL's parameters for a plain token of `scope` (default client, no URL, no expiry). */
const values = (scope: string, userId: string | null, extra: Partial<IssueValues> = {}): IssueValues => ({
  scope, targetUrl: null, host: null, path: null, params: null, userId, loginMode: 'NONE', data: null, maxUses: 1,
  notBefore: null, expiresAt: null, sessionMinutes: 10, clientId: '1', kid: 'default', tolerance: 0, ...extra,
});
const stored = (scope: string) =>
  server.sql<{ id: string; user_id: string | null }>('select id::text, user_id from request_token where scope = $1 order by id', [scope]);

describe('micro-batched issuance', () => {
  it('concurrent createRequestToken calls share statements and each gets its own, distinct token', async () => {
    const before = { ...server.services.issueBatcher!.stats };
    const inputs = Array.from({ length: 60 }, (_, i) => ({ scope: 'issue-batch', userId: `user-${i}`, maxUses: 1 + (i % 5) }));
    const answers = await Promise.all(inputs.map((input) => server.gql(CREATE, { input })));

    const stats = server.services.issueBatcher!.stats;
    expect(stats.batched - before.batched).toBeGreaterThan(0);
    expect(stats.statements - before.statements).toBeLessThan(inputs.length);

    const tokens = answers.map((a) => a.data?.createRequestToken);
    for (const [i, token] of tokens.entries()) {
      expect(token?.__typename, JSON.stringify(answers[i])).toBe('CreateRequestTokenSuccess');
      // Each answer is its own input's token, and its JWT names that token.
      expect(token.token).toMatchObject({ scope: 'issue-batch', userId: `user-${i}`, maxUses: 1 + (i % 5), usedToDate: 0 });
      const claims = JSON.parse(Buffer.from(token.jwt.split('.')[1], 'base64url').toString());
      expect(claims).toMatchObject({ jti: token.token.id, aud: `user-${i}`, max: 1 + (i % 5) });
    }
    expect(new Set(tokens.map((t) => t.token.id)).size).toBe(inputs.length);
    const rows = await stored('issue-batch');
    expect(rows).toHaveLength(inputs.length);
    for (const t of tokens) expect(rows.find((r) => r.id === t.token.id)?.user_id).toBe(t.token.userId);
  });

  it('refuses only the inputs that fail the checks against the present; the others in the batch are stored', async () => {
    const past = new Date(Date.now() - 60_000).toISOString();
    const inputs = Array.from({ length: 40 }, (_, i) => ({
      scope: 'issue-batch-mixed',
      userId: `user-${i}`,
      ...(i % 4 === 1 ? { expiresAt: past } : {}),
    }));
    const before = { ...server.services.issueBatcher!.stats };
    const answers = await Promise.all(inputs.map((input) => server.gql(CREATE, { input })));
    expect(server.services.issueBatcher!.stats.batched - before.batched).toBeGreaterThan(0);
    for (const [i, answer] of answers.entries()) {
      const result = answer.data?.createRequestToken;
      if (i % 4 === 1) {
        expect(result).toMatchObject({ __typename: 'ValidationError', issues: [{ path: ['input', 'expiresAt'] }] });
      } else {
        expect(result).toMatchObject({ __typename: 'CreateRequestTokenSuccess', token: { userId: `user-${i}` } });
      }
    }
    const rows = await stored('issue-batch-mixed');
    expect(rows.map((r) => r.user_id).sort()).toEqual(inputs.filter((_, i) => i % 4 !== 1).map((x) => x.userId).sort());
  });

  it('a lone call goes straight through, with one statement of its own', async () => {
    const batcher = createIssueBatcher(server.services.pool, { slots: 1, maxBatch: 64, waitTimeoutMs: 5_000 });
    const row = await batcher.issue(values('issue-batch-lone', 'solo'));
    expect(row).toMatchObject({ scope: 'issue-batch-lone', user_id: 'solo' });
    expect(batcher.stats).toEqual({ statements: 1, batched: 0 });
  });

  it('runs each issue of a failed batch alone, so that a bad input changes nothing for the others', async () => {
    const batcher = createIssueBatcher(server.services.pool, { slots: 1, maxBatch: 64, waitTimeoutMs: 5_000 });
    // The first runs at once, alone; the other three wait and share a statement, which fails on the bad one
    // (max_uses >= 1 is a constraint of the table).
    const outcomes = await Promise.allSettled([
      batcher.issue(values('issue-batch-bad', 'a')),
      batcher.issue(values('issue-batch-bad', 'b')),
      batcher.issue(values('issue-batch-bad', 'bad', { maxUses: 0 })),
      batcher.issue(values('issue-batch-bad', 'c')),
    ]);
    expect(batcher.stats).toEqual({ statements: 2, batched: 3 });
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    expect((outcomes[2] as PromiseRejectedResult).reason).toBeInstanceOf(pg.DatabaseError);
    const users = outcomes.map((o) => (o.status === 'fulfilled' ? o.value?.user_id : null));
    expect(users).toEqual(['a', 'b', null, 'c']);
    // Each good input stored once (the failed batch left nothing behind), the bad one not at all.
    expect((await stored('issue-batch-bad')).map((r) => r.user_id)).toEqual(['a', 'b', 'c']);
  });

  it('an issue that waits too long for a statement is answered as POOL_EXHAUSTED', async () => {
    const batcher = createIssueBatcher(server.services.pool, { slots: 1, maxBatch: 64, waitTimeoutMs: 100 });
    const client = await server.services.pool.connect();
    try {
      // The one slot's statement waits on a lock held here, so the next issue waits in the queue past its deadline.
      await client.query('begin');
      await client.query('lock table request_token in exclusive mode');
      const first = batcher.issue(values('issue-batch-wait', 'first'));
      const waiting = batcher.issue(values('issue-batch-wait', 'second')).catch((error) => error);
      const error = await waiting;
      expect(error).toBeInstanceOf(IssueQueueTimeout);
      expect(transientReason(error)).toBe('POOL_EXHAUSTED');
      await client.query('rollback');
      await first;
    } finally {
      client.release();
    }
  });
});
