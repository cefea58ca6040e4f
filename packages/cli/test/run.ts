// The program in-process, as main.ts runs it, with its output captured: `run(argv, io)` is the
// whole CLI (main.ts only plugs in the process).
import { run } from '../src/cli.ts';
import type { Io } from '../src/context.ts';

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `stageline …args` with exactly `env` (nothing of the test process's environment leaks in). */
export async function stageline(args: string[], env: NodeJS.ProcessEnv): Promise<Result> {
  let stdout = '';
  let stderr = '';
  const io: Io = {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env,
    onInterrupt: () => () => {},
  };
  const code = await run(args, io);
  return { code, stdout, stderr };
}
