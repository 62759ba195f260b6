/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json', diagnostics: { warnOnly: false } }] },
  testTimeout: 60000,
  // Mount tests share /dev/fuse, loop devices and timing budgets: one file at a time keeps the
  // timing assertions honest on a 2-core machine.
  maxWorkers: 1,
};
