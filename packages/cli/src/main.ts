#!/usr/bin/env node
// The `stageline` command (run with the project's Node 24: deploy/dev/stageline or npm run stageline --).
import { run } from './cli.ts';

// `stageline history | head` closes the pipe early: that is not an error worth a stack trace.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});

process.exitCode = await run(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  onInterrupt(listener) {
    const handler = () => listener();
    process.on('SIGINT', handler);
    return () => {
      process.off('SIGINT', handler);
    };
  },
});
