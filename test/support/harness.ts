import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { createApp, type App, type AppOptions } from '../../server/http/app.js';
import { loadConfig, type Config } from '../../server/config.js';
import type { Services } from '../../server/context.js';
import type { Database } from '../../server/database/db.js';
import { createApiKey } from '../../server/domain/api-keys.js';
import { ensureLogPartitions } from '../../server/domain/log-partitions.js';
import { createServices } from '../../server/services.js';
import { prepareCitusDatabase } from './citus.js';

export const TEST_SECRET = 'test-secret-test-secret-test-secret-0123456789';

/**
 * Creates an empty database on the run's PostgreSQL server and returns its URL. On a Citus cluster (CITUS_TEST=1) it is
 * migrated and distributed too, as an operator would do before starting the service, unless `plain` is asked for.
 */
export async function createTestDatabase({ plain = false, timeZone }: { plain?: boolean; timeZone?: string } = {}): Promise<string> {
  const serverUrl = inject('databaseUrl');
  const name = `rt_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
    // Every session of the database in this zone (a zone far from UTC shows what depends on the session's zone).
    if (timeZone) await admin.query(`alter database ${name} set timezone to '${timeZone}'`);
  } finally {
    await admin.end();
  }
  if (inject('citus') && !plain) await prepareCitusDatabase(serverUrl, name);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export interface GraphQLResponse<T = any> {
  status: number;
  data?: T;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
}

export interface TestServer {
  url: string;
  graphqlUrl: string;
  databaseUrl: string;
  apiKey: string;
  config: Config;
  services: Services;
  db: Database;
  app: App;
  /** What the service logged as errors (an unexpected error's cause among them). */
  loggedErrors: unknown[];
  /** Runs a GraphQL operation over real HTTP with the admin key (or `key`; null sends none). */
  gql<T = any>(query: string, variables?: Record<string, unknown>, key?: string | null): Promise<GraphQLResponse<T>>;
  /** Runs SQL directly against the test database. */
  sql<T extends pg.QueryResultRow = any>(text: string, values?: unknown[]): Promise<T[]>;
  close(): Promise<void>;
}

/** A migrated database of its own, the real app on a real port, and an admin API key. */
export async function startTestServer(
  env: Record<string, string> = {},
  appOptions: AppOptions = {},
  /**
   * `plain`: on a Citus cluster, a database without the extension (one plain PostgreSQL, for comparisons);
   * `databaseUrl`: a database made already (createTestDatabase).
   */
  { plain = false, databaseUrl: given }: { plain?: boolean; databaseUrl?: string } = {},
): Promise<TestServer> {
  const databaseUrl = given ?? (await createTestDatabase({ plain }));
  const config = loadConfig({ NODE_ENV: 'test', REQUEST_TOKEN_SECRET: TEST_SECRET, DATABASE_URL: databaseUrl, ...env });
  const errors: unknown[] = [];
  const services = await createServices(config, {
    log: { info: () => {}, error: (message, error) => errors.push(error ?? message) },
  });
  const { db } = services;
  // The log has a partition per month (created ahead by the service): tests write history up to a year back.
  const now = new Date();
  await ensureLogPartitions(db.pool, { from: new Date(Date.UTC(now.getUTCFullYear() - 1, now.getUTCMonth(), 1)), to: now });
  const { key: apiKey } = await createApiKey(db.orm.em.fork(), { name: 'test admin', permissions: ['admin'] });
  const app = createApp(services, appOptions);
  const url = await app.listen(0, '127.0.0.1');
  const graphqlUrl = `${url}/graphql`;

  return {
    url,
    graphqlUrl,
    databaseUrl,
    apiKey,
    config,
    services,
    db,
    app,
    loggedErrors: errors,
    async gql(query, variables, key = apiKey) {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (key !== null) headers.authorization = `Bearer ${key}`;
      const res = await fetch(graphqlUrl, { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
      const body = (await res.json()) as GraphQLResponse;
      return { status: res.status, data: body.data, errors: body.errors };
    },
    async sql(text, values) {
      return (await db.pool.query(text, values)).rows;
    },
    async close() {
      await app.stop(1_000);
      await services.close();
    },
  };
}
