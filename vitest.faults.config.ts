import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const require = createRequire(import.meta.url);

// Fault, shutdown and scale-out tests: real processes and PostgreSQL clusters that get stopped and killed. Slower than
// `npm test`, so they run on their own (`npm run test:faults`, also in .ci/run), one file at a time.
export default defineConfig({
  resolve: {
    // Same reason as vitest.config.ts: one copy of graphql.
    alias: {
      graphql: require.resolve('graphql'),
      '@request-token/sdk': fileURLToPath(new URL('sdk/index.ts', import.meta.url)),
    },
  },
  test: {
    include: ['test/faults/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
