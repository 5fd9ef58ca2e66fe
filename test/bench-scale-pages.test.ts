import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pageBoundary } from '../bench/scale-pages.js';
import { encodeCursor } from '../server/domain/paging.js';
import { startTestServer, type TestServer } from './support/harness.js';

/**
 * The scale benchmark's 1,000th page: the cursor it sends and the row it expects must be the service's page boundary,
 * with ids of different lengths (in the 2-million-row run `order by id` on `id::text` picked 9,748 for 1,974,189).
 */

let server: TestServer;
/** Ids of every length from 1 to 5 digits, around each power of ten, newest first as numbers. */
const IDS = [7, 8, 9, 10, 11, 12, 98, 99, 100, 101, 102, 998, 999, 1000, 1001, 9999, 10000, 10001].sort((a, b) => b - a).map(String);
const USER_IDS = IDS.filter((_, i) => i % 3 !== 1);

const LOGS = /* GraphQL */ `
  query Logs($filter: RequestTokenLogFilter, $first: Int, $after: String) {
    requestTokenLogs(filter: $filter, first: $first, after: $after) { edges { node { id } } }
  }
`;

beforeAll(async () => {
  server = await startTestServer();
  for (const id of IDS) {
    await server.sql(
      `insert into request_token_log (id, token_id, error_code, user_id, timestamp, client_id) values ($1, 0, 'TOKEN_MALFORMED', $2, now(), 1)`,
      [id, USER_IDS.includes(id) ? 'reader' : null],
    );
  }
});
afterAll(() => server?.close());

describe("bench:scale's page boundaries", () => {
  it.each([
    ['no filter', 'true', {}, IDS],
    ['a filter', `user_id = 'reader'`, { userId: 'reader' }, USER_IDS],
  ])('follow the ids as numbers, as the service pages them (%s)', async (_label, where, filter, ids) => {
    for (let rowsBefore = 1; rowsBefore < ids.length; rowsBefore++) {
      const boundary = await pageBoundary(server.db.pool, '1', where, rowsBefore);
      expect(boundary, `after ${rowsBefore} rows`).toEqual({ cursorId: ids[rowsBefore - 1], nextId: ids[rowsBefore] });
      const res: any = await server.gql(LOGS, { filter, first: 1, after: encodeCursor(boundary!.cursorId) });
      expect(res.data.requestTokenLogs.edges.map((e: any) => e.node.id), `after ${rowsBefore} rows`).toEqual([boundary!.nextId]);
    }
    expect(await pageBoundary(server.db.pool, '1', where, ids.length)).toBeNull();
  });
});
