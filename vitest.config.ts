import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'services/*/test/**/*.test.ts', 'test/e2e/**/*.test.ts'],
    // Real servers: each test file gets its own database schema and bus prefix (testkit),
    // so files run in parallel without seeing each other.
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    globalSetup: ['packages/testkit/src/global-setup.ts'],
  },
});
