import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getLog, listLogs, listLogsOfTokens, type LogFilter } from '../server/domain/logs.js';
import { getToken, getTokens, listTokens, type TokenFilter } from '../server/domain/tokens.js';
import { listingShapesBuilt, runListing, withoutListingCache } from '../server/domain/listing-statements.js';
import { RequestToken } from '../server/database/entities/request-token.js';
import { tenantQueryBuilder } from '../server/database/tenant.js';
import { encodeCursor, type Page } from '../server/domain/paging.js';
import { startTestServer, type TestServer } from './support/harness.js';

/**
 * Listings run as statements built once per shape (server/domain/listing-statements.ts): the tenant and every filter
 * value are parameters. The cache must never carry one tenant's, the admin's or one filter's statement into another
 * call: every call below, made in an order meant to catch that (admin first, then each tenant, filters changing), must
 * answer exactly what the uncached path (the QueryBuilder built with the real values) answers.
 */

let server: TestServer;
const clients: string[] = [];
const tokensOf = new Map<string, string[]>();
const logsOf = new Map<string, string[]>();

beforeAll(async () => {
  server = await startTestServer();
  for (const name of ['listing-a', 'listing-b']) {
    const [{ id }] = await server.sql<{ id: string }>(`insert into api_client (name) values ($1) returning id::text`, [name]);
    clients.push(id);
    // Both tenants use the same scopes and user ids: only the tenant tells their rows apart.
    const tokens = await server.sql<{ id: string }>(
      `insert into request_token (client_id, scope, user_id, max_uses, revoked_at)
       select $1, 'scope-' || (i % 3), 'user-' || (i % 2), 5, case when i % 4 = 0 then now() end
       from generate_series(1, 12) i returning id::text`,
      [id],
    );
    tokensOf.set(id, tokens.map((t) => t.id));
    const logs = await server.sql<{ id: string }>(
      `insert into request_token_log (client_id, token_id, error_code, user_id, status_code, timestamp)
       select $1, t.id, case when i = 3 then 'SCOPE_MISMATCH' end, t.user_id, case when i = 2 then 502 end,
         now() - i * interval '1 minute'
       from request_token t cross join generate_series(1, 3) i where t.client_id = $1 returning id::text`,
      [id],
    );
    logsOf.set(id, logs.map((l) => l.id));
  }
});
afterAll(() => server?.close());

const deps = (tenant: string | null) => ({
  orm: server.db.orm,
  pool: server.db.pool,
  tenant,
  config: { clockToleranceSeconds: 0 },
});

/** A page as plain data (its count read). */
async function plain<T>(page: Page<T>) {
  const totalCount = typeof page.totalCount === 'number' ? page.totalCount : await page.totalCount();
  return { nodes: page.nodes, hasNextPage: page.hasNextPage, hasPreviousPage: page.hasPreviousPage, totalCount };
}

/** The answer of `call` from the cached path and from the uncached one: they must be equal. */
async function both<T>(call: () => Promise<T>): Promise<T> {
  const cached = await call();
  const fresh = await withoutListingCache(call);
  expect(cached).toEqual(fresh);
  return cached;
}

describe('listing statements cached per shape', () => {
  it('answer as the uncached path does for two tenants, the admin and changing filters', async () => {
    const [a, b] = clients;
    const someA = tokensOf.get(a)!;
    const someB = tokensOf.get(b)!;
    const callers = [null, a, b, a, null, b];
    const logFilters: LogFilter[] = [
      {},
      { scope: 'scope-1' },
      { userId: 'user-0' },
      { failed: true },
      { failed: false },
      { statusCode: 502 },
      { tokenId: someA[0] },
      { tokenId: someB[1] },
      { tokenId: 'not-an-id' },
      { scope: 'scope-2', userId: 'user-1', since: new Date(Date.now() - 150_000) },
      { until: new Date(Date.now() - 90_000) },
    ];
    const tokenFilters: TokenFilter[] = [{}, { scope: 'scope-0' }, { userId: 'user-1' }, { status: 'REVOKED' }, { status: 'ACTIVE', scope: 'scope-2' }];
    let seen = 0;
    for (const tenant of callers) {
      const own = (id: string | null) => tenant === null || tokensOf.get(tenant)!.includes(id!);
      for (const filter of logFilters) {
        for (const args of [{ first: 5 }, { first: 3, after: encodeCursor(logsOf.get(b)![20]) }, { first: 0, count: false }]) {
          const page = await both(async () => plain(await listLogs(deps(tenant), filter, args)));
          for (const log of page.nodes) {
            expect(own(log.tokenId)).toBe(true);
            expect(log.token?.id).toBe(log.tokenId);
          }
          seen += page.nodes.length;
        }
      }
      for (const filter of tokenFilters) {
        for (const args of [{ first: 4 }, { first: 4, after: encodeCursor(someB[6]) }]) {
          const page = await both(async () => plain(await listTokens(deps(tenant), filter, args)));
          for (const token of page.nodes) expect(own(token.id)).toBe(true);
          seen += page.nodes.length;
        }
      }
      const ids = [...someA.slice(0, 3), ...someB.slice(0, 3)];
      const found = await both(async () => [...(await getTokens(deps(tenant), ids)).keys()].sort());
      expect(found).toEqual(ids.filter(own).sort());
      for (const id of [someA[4], someB[4]]) expect((await both(() => getToken(deps(tenant), id)))?.id ?? null).toBe(own(id) ? id : null);
      for (const id of [logsOf.get(a)![2], logsOf.get(b)![2]]) {
        const log = await both(() => getLog(deps(tenant), id));
        expect(log === null).toBe(tenant !== null && !logsOf.get(tenant)!.includes(id));
      }
      for (const args of [{ first: 2 }, { first: 1, after: encodeCursor(logsOf.get(a)![30]) }]) {
        const pages = await both(async () => {
          const byToken = await listLogsOfTokens(deps(tenant), ids, args);
          return Promise.all([...byToken].map(async ([id, page]) => [id, await plain(page)]));
        });
        for (const [id, page] of pages as [string, { nodes: { tokenId: string }[] }][]) {
          if (!own(id)) expect(page.nodes).toEqual([]);
          for (const log of page.nodes) expect(log.tokenId).toBe(id);
        }
      }
    }
    // The comparisons compared something: rows were read, through a handful of statements, not one per call.
    expect(seen).toBeGreaterThan(300);
    expect(listingShapesBuilt()).toBeGreaterThan(20);
    expect(listingShapesBuilt()).toBeLessThan(120);
  });

  it('serve one statement per shape to every tenant: the tenant is a parameter, not part of the text', async () => {
    const statements: { name?: string; text: string; values: unknown[] }[] = [];
    const query = server.db.pool.query.bind(server.db.pool);
    server.db.pool.query = ((config: any, ...rest: any[]) => {
      if (typeof config === 'object' && config?.name?.startsWith('listing-')) statements.push(config);
      return (query as any)(config, ...rest);
    }) as typeof query;
    try {
      await listLogs(deps(clients[0]), { userId: 'user-1' }, { first: 2 });
      await listLogs(deps(clients[1]), { userId: 'user-1' }, { first: 7 });
    } finally {
      server.db.pool.query = query;
    }
    const pages = statements.filter((s) => /\blimit\b/.test(s.text));
    expect(pages).toHaveLength(2);
    expect(pages[0].name).toBe(pages[1].name);
    expect(pages[0].text).toBe(pages[1].text);
    expect(pages[0].values).toContain(clients[0]);
    expect(pages[1].values).toContain(clients[1]);
    expect(pages[0].text).toMatch(/"client_id" = \$\d/);
  });

  it('refuse to cache a statement that has a value (or the tenant) in its text instead of as a parameter', async () => {
    const inlined = (tenant: string | null) =>
      runListing(deps(tenant), 'test-inlined', { scope: 'scope-1' }, (em, v) =>
        tenantQueryBuilder(em, RequestToken, 't').select('t.id').andWhere(`t.scope = '${String(v.scope).replace(/\0/g, '')}'`),
      );
    await expect(inlined(null)).rejects.toThrow(/the value scope is not a parameter/);
    // The tenant's condition written from the caller's value (as a closure would) instead of the EntityManager's filter.
    const tenantInlined = (tenant: string) =>
      runListing(deps(tenant), 'test-tenant-inlined', {}, (em) =>
        em.createQueryBuilder(RequestToken, 't').select('t.id').where({ clientId: tenant }),
      );
    await expect(tenantInlined(clients[0])).rejects.toThrow(/the value \$tenant is not a parameter/);
  });
});
