// Runs programs with an argv array (never a shell string): podman locally, helm and kubectl for Kubernetes.
import { minimalEnvironment, runProcess } from '@stageline/exec';

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface CommandOptions {
  /** Aborting kills the program (SIGTERM, then SIGKILL after 5 s) and rejects with the signal's reason. */
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
  /** Each complete line of output as it arrives (stdout and stderr), e.g. for a job's log. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** A long-running command read only through onLine (podman events, logs --follow): nothing is collected. */
  stream?: boolean;
}

/** The one seam the Kubernetes runtime has: tests record argv instead of running helm (none here). */
export interface CommandRunner {
  run(command: string, args: readonly string[], options?: CommandOptions): Promise<CommandResult>;
}

export class CommandFailed extends Error {
  override name = 'CommandFailed';
  readonly command: string;
  readonly args: readonly string[];
  readonly result: CommandResult;
  constructor(command: string, args: readonly string[], result: CommandResult, detail: string) {
    super(`${command} ${args[0] ?? ''} failed (exit ${result.exitCode})${detail !== '' ? `: ${detail}` : ''}`);
    this.command = command;
    this.args = args;
    this.result = result;
  }
}

const KILL_AFTER_MS = 5_000;

/**
 * The real runner: @stageline/exec's, shared with the build service — an argv array, and an
 * environment allow-listed from this process's (never DATABASE_URL and the like); children die with
 * the worker. Output collected and handed out line by line.
 */
export class ProcessRunner implements CommandRunner {
  readonly #env: Record<string, string>;
  constructor(env: NodeJS.ProcessEnv = process.env) {
    this.#env = minimalEnvironment(env);
  }

  async run(command: string, args: readonly string[], options: CommandOptions = {}): Promise<CommandResult> {
    const { signal, onLine } = options;
    if (signal?.aborted) throw signal.reason;
    const result = await runProcess({
      command,
      args,
      env: options.env === undefined ? this.#env : minimalEnvironment(options.env),
      ...(signal !== undefined ? { signal } : {}),
      ...(onLine !== undefined ? { onLine } : {}),
      captureStdout: options.stream !== true,
      stdoutLinesToo: true,
      captureStderr: options.stream !== true,
      killGraceMs: KILL_AFTER_MS,
    });
    if (signal?.aborted) throw signal.reason;
    return {
      exitCode: result.code ?? (result.signal !== null ? 128 : 1),
      stdout: result.stdout.toString('utf8'),
      stderr: result.stderr.toString('utf8'),
    };
  }
}
