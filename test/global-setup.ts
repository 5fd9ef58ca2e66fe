import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmbeddedDatabase } from '../server/database/embedded-db.js';
import { bundle, bundleCli } from '../scripts/build-service.js';
import { freePort } from './support/ports.js';
import { clusterTempDir } from './support/temp-dir.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A PostgreSQL server URL; each test file creates its own database on it. */
    databaseUrl: string;
    /** The server is a Citus coordinator (CITUS_TEST=1, `npm run test:citus`): test databases are distributed. */
    citus: boolean;
  }
}

/** The service bundle, and one real PostgreSQL per run: DATABASE_URL when given, else an embedded cluster in a temporary folder. */
export default async function setup(project: TestProject) {
  // Tests that start the service or the command as a process run what `npm start` and `npx request-token` run: these
  // bundles of the current sources.
  await Promise.all([bundle(), bundleCli()]);
  project.provide('citus', process.env.CITUS_TEST === '1');
  if (process.env.DATABASE_URL) {
    project.provide('databaseUrl', process.env.DATABASE_URL);
    return;
  }
  const dir = await clusterTempDir('rt-test-pg-');
  const db = await startEmbeddedDatabase({ dir: join(dir, 'data'), port: await freePort(), persistent: false,
    // Each test file creates a database of its own, as the service's role (not a superuser), like the service.
    serviceRoleCreatesDatabases: true,
  });
  project.provide('databaseUrl', db.url);
  return async () => {
    await db.stop();
    await rm(dir, { recursive: true, force: true });
  };
}
