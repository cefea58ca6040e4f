import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: [
      'packages/*/test/**/*.test.ts',
      'services/*/test/**/*.test.ts',
      'test/e2e/**/*.test.ts',
      'deploy/test/**/*.test.ts',
    ],
    // Real servers: each test file gets its own database schema and bus prefix (testkit),
    // so files run in parallel without seeing each other.
    pool: 'forks',
    // End-to-end tests deploy real containers; a loaded 2-core machine can take minutes.
    testTimeout: 180_000,
    hookTimeout: 60_000,
    globalSetup: ['packages/testkit/src/global-setup.ts'],
  },
});
