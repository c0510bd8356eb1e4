import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    // Integration tests own kernel namespaces and real daemons: run files one at a time.
    // Two at a time (--fileParallelism --maxWorkers=2) passes (every file names its own
    // namespaces and temp folders; cleanup kills only what names its own folders), but on a
    // 2-core machine that is busy anyway it was no faster (428 s against 438 s) and it puts
    // one file's load (a 10,000-link-event storm holds the RTNL lock) under another's timing.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
