// Runs programs with an argv array (never a shell string): podman locally, helm and kubectl for Kubernetes.
import { spawn } from 'node:child_process';

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

function lineSplitter(emit: (line: string) => void): { push(chunk: string): void; flush(): void } {
  let rest = '';
  return {
    push(chunk) {
      rest += chunk;
      let index = rest.indexOf('\n');
      while (index !== -1) {
        emit(rest.slice(0, index));
        rest = rest.slice(index + 1);
        index = rest.indexOf('\n');
      }
    },
    flush() {
      if (rest !== '') emit(rest);
      rest = '';
    },
  };
}

/** The real runner: child_process.spawn with an argv array; output collected and handed out line by line. */
export class ProcessRunner implements CommandRunner {
  readonly #env: NodeJS.ProcessEnv;
  constructor(env: NodeJS.ProcessEnv = process.env) {
    this.#env = env;
  }

  run(command: string, args: readonly string[], options: CommandOptions = {}): Promise<CommandResult> {
    const { signal, onLine } = options;
    return new Promise<CommandResult>((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const child = spawn(command, [...args], {
        env: options.env ?? this.#env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      const out = lineSplitter((line) => onLine?.(line, 'stdout'));
      const err = lineSplitter((line) => onLine?.(line, 'stderr'));
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        stdout += chunk;
        out.push(chunk);
      });
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
        stderr += chunk;
        err.push(chunk);
      });
      let killTimer: NodeJS.Timeout | undefined;
      const onAbort = (): void => {
        child.kill('SIGTERM');
        killTimer = setTimeout(() => child.kill('SIGKILL'), KILL_AFTER_MS);
        killTimer.unref();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      child.once('error', (e) => {
        signal?.removeEventListener('abort', onAbort);
        reject(e);
      });
      child.once('close', (code, killedBy) => {
        signal?.removeEventListener('abort', onAbort);
        if (killTimer !== undefined) clearTimeout(killTimer);
        out.flush();
        err.flush();
        if (signal?.aborted) {
          reject(signal.reason);
          return;
        }
        resolve({ exitCode: code ?? (killedBy !== null ? 128 : 1), stdout, stderr });
      });
    });
  }
}
