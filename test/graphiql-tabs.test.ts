import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse, validate } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schema } from '../schema/index.js';
import { graphiqlTabs } from '../server/http/graphiql-dashboard-tabs.js';
import { startTestServer, type TestServer } from './support/harness.js';
import { ROOT } from './support/process.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());

describe('GraphiQL and dashboard operations', () => {
  it('GraphiQL opens with tabs for stats, logs by token and lookup by JWT', async () => {
    const res = await fetch(server.graphqlUrl, { headers: { accept: 'text/html' } });
    const html = await res.text();
    expect(res.status).toBe(200);
    expect(html).toContain('defaultTabs');
    for (const name of ['query UsageStats', 'query LogsByToken', 'query LookupByJwt', 'mutation RevokeForUser']) {
      expect(html).toContain(name);
    }
  });

  it.each(graphiqlTabs.map((tab, i) => [i, tab] as const))('GraphiQL tab %i is valid against the schema', (_i, tab) => {
    expect(validate(schema, parse(tab.query)).map((e) => e.message)).toEqual([]);
  });

  it('the GraphiQL stats tab runs as it stands', async () => {
    const tab = graphiqlTabs.find((t) => t.query.includes('query UsageStats'))!;
    const res = await server.gql(tab.query, JSON.parse(tab.variables!));
    expect(res.errors).toBeUndefined();
    expect(res.data.usageStats.buckets).toHaveLength(30);
  });

  it("every operation in the dashboard page's script is valid against the schema", async () => {
    const script = await readFile(join(ROOT, 'dashboard', 'dashboard.js'), 'utf8');
    const operations = [...script.matchAll(/['`]((?:query|mutation) \w+[\s\S]*?)['`]/g)].map((m) => m[1]);
    expect(operations.length).toBeGreaterThanOrEqual(6);
    for (const operation of operations) {
      expect([operation.split('(')[0], validate(schema, parse(operation)).map((e) => e.message)]).toEqual([
        operation.split('(')[0],
        [],
      ]);
    }
  });

  it('serves the page and its assets with a strict content security policy, and nothing else under /dashboard', async () => {
    for (const [path, type] of [
      ['/dashboard', 'text/html'],
      ['/dashboard/dashboard.js', 'text/javascript'],
      ['/dashboard/dashboard.css', 'text/css'],
      ['/dashboard/vendor/chart.umd.min.js', 'text/javascript'],
    ]) {
      const res = await fetch(`${server.url}${path}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain(type);
      expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
      await res.arrayBuffer();
    }
    expect((await fetch(`${server.url}/dashboard/../package.json`)).status).not.toBe(200);
    expect((await fetch(`${server.url}/dashboard/secret`)).status).toBe(404);
    expect((await fetch(`${server.url}/dashboard`, { method: 'POST' })).status).toBe(405);
  });
});
