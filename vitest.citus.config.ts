import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const require = createRequire(import.meta.url);

// `npm run test:citus` (scripts/test-citus.sh): the Citus tests and a core subset of the suite, against the coordinator
// of a real Citus cluster (DATABASE_URL, CITUS_TEST=1), one file at a time (the cluster shares the machine's cores).
export default defineConfig({
  resolve: {
    // Same reason as vitest.config.ts: one copy of graphql.
    alias: {
      graphql: require.resolve('graphql'),
      '@request-token/sdk': fileURLToPath(new URL('sdk/index.ts', import.meta.url)),
    },
  },
  test: {
    include: [
      'test/citus/**/*.test.ts',
      // The core of the suite: the API's contract through the real server, issue, redeem, refusals, concurrency,
      // listings and their pages, statistics, retention, tenants.
      'test/schema.test.ts',
      'test/create.test.ts',
      'test/bulk-issue.test.ts',
      'test/redeem.test.ts',
      'test/refusal-log.test.ts',
      'test/concurrency.test.ts',
      'test/queries.test.ts',
      'test/usage-stats.test.ts',
      'test/security/tenants.test.ts',
      'test/security/tenant-walk.test.ts',
      'test/api-key-lifecycle.test.ts',
      'test/docs-snippets.test.ts',
    ],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
