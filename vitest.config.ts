import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { configDefaults, defineConfig } from 'vitest/config';

const require = createRequire(import.meta.url);

export default defineConfig({
  resolve: {
    // graphql 16 ships CJS (main) and ESM (module) without an exports map: Node and the libraries load the CJS build,
    // Vite would pick the ESM one for our sources. Two copies break `instanceof GraphQLError`, so pin the CJS build.
    alias: {
      graphql: require.resolve('graphql'),
      // The SDK by its package name, from its sources (test/sdk/package.test.ts checks the packed build).
      '@request-token/sdk': fileURLToPath(new URL('sdk/index.ts', import.meta.url)),
    },
  },
  test: {
    include: ['test/**/*.test.ts'],
    // Processes and clusters that get killed: `npm run test:faults` (vitest.faults.config.ts).
    exclude: [...configDefaults.exclude, 'test/faults/**'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
