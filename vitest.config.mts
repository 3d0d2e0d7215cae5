import { defineConfig } from 'vitest/config';

// Unit tests (test/unit) use mocks; integration tests (test/integration) use real sockets,
// pseudo-terminals and SQLite files; e2e tests (test/e2e) start the compiled daemon (npm test builds first).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // a 2-core machine: keep heavy whole-daemon files from starving each other
    maxWorkers: 2,
  },
});
