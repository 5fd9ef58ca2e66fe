import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './support/harness.js';
import { issue, redeem, tokenState } from './support/operations.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());

it('gives exactly 3 successes and 100 log rows for 100 simultaneous redemptions of a maxUses=3 token', async () => {
  const { jwt, token } = await issue(server, { scope: 'race', maxUses: 3 });
  const results = await Promise.all(Array.from({ length: 100 }, () => redeem(server, { jwt, scope: 'race' })));
  const outcomes = results.map((r) => (r.__typename === 'Redemption' ? 'ok' : r.code));
  expect(outcomes.filter((o) => o === 'ok')).toHaveLength(3);
  expect(outcomes.filter((o) => o === 'MAX_USES_EXCEEDED')).toHaveLength(97);
  const state = await tokenState(server, token.id);
  expect(state.usedToDate).toBe(3);
  expect(state.logs).toHaveLength(100);
  expect(state.logs.filter((l) => l.error_code === null)).toHaveLength(3);
  const remaining = results.filter((r) => r.__typename === 'Redemption').map((r) => r.usesRemaining);
  expect(remaining.sort()).toEqual([0, 1, 2]);
});
