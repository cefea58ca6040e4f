// Runs the workers' tools (git, buildah, podman, helm, kubectl) as child processes: an argv array
// (never a shell line), an explicit environment (never the worker's own: it holds DATABASE_URL and
// other credentials), every output line handed over as it comes, stopped on abort (SIGTERM, then
// SIGKILL after a grace period). Under `setpriv --pdeathsig`, a child also gets SIGTERM when this
// process dies — even by kill -9 — so an orphaned build never goes on to push after its worker is gone.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface RunOptions {
  command: string;
  args: readonly string[];
  env: Readonly<Record<string, string>>;
  cwd?: string;
  signal?: AbortSignal;
  /** Each line of stdout and stderr, without its end of line. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** Collect stdout (for commands whose output is data, e.g. `git rev-parse`): its lines then skip `onLine`… */
  captureStdout?: boolean;
  /** …unless this is set (podman and helm: their output is both progress to show and data to read). */
  stdoutLinesToo?: boolean;
  /** Collect stderr too (for error messages built from it). */
  captureStderr?: boolean;
  /** Written to stdin, then closed; default: stdin is /dev/null. */
  input?: string;
  killGraceMs?: number;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The run was stopped through `signal`. */
  aborted: boolean;
  stdout: Buffer;
  /** Empty unless `captureStderr`. */
  stderr: Buffer;
  /** The last lines of output, stdout and stderr interleaved. */
  tail: string[];
}

const SETPRIV = '/usr/bin/setpriv';
const hasSetpriv = existsSync(SETPRIV);
const TAIL_LINES = 40;
/** Longer lines are cut: a single runaway line must not become one huge log record. */
const MAX_LINE = 16 * 1024;

export async function runProcess(options: RunOptions): Promise<RunResult> {
  const [command, args] = hasSetpriv
    ? [SETPRIV, ['--pdeathsig', 'TERM', '--', options.command, ...options.args]]
    : [options.command, [...options.args]];
  const child = spawn(command, args, {
    env: options.env,
    cwd: options.cwd,
    stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  const tail: string[] = [];
  const stdoutChunks: Buffer[] = [];
  const stderrChunks: Buffer[] = [];
  const emit = (line: string, stream: 'stdout' | 'stderr') => {
    const cut = line.length > MAX_LINE ? `${line.slice(0, MAX_LINE)}…` : line;
    tail.push(cut);
    if (tail.length > TAIL_LINES) tail.shift();
    options.onLine?.(cut, stream);
  };
  const lines = (stream: 'stdout' | 'stderr') => {
    let pending = '';
    return {
      data(chunk: Buffer) {
        pending += chunk.toString('utf8');
        // Progress output rewrites its line with \r: each rewrite is a line of its own.
        const parts = pending.split(/\r?\n|\r/);
        pending = parts.pop() ?? '';
        for (const part of parts) if (part !== '') emit(part, stream);
      },
      end() {
        if (pending !== '') emit(pending, stream);
        pending = '';
      },
    };
  };
  const out = lines('stdout');
  const err = lines('stderr');
  child.stdout?.on('data', (chunk: Buffer) => {
    if (options.captureStdout) stdoutChunks.push(chunk);
    if (!options.captureStdout || options.stdoutLinesToo) out.data(chunk);
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    if (options.captureStderr) stderrChunks.push(chunk);
    err.data(chunk);
  });
  if (options.input !== undefined) child.stdin?.end(options.input);

  let aborted = false;
  let killTimer: NodeJS.Timeout | undefined;
  const stop = () => {
    aborted = true;
    child.kill('SIGTERM');
    killTimer = setTimeout(() => child.kill('SIGKILL'), options.killGraceMs ?? 10_000);
  };
  if (options.signal?.aborted) stop();
  else options.signal?.addEventListener('abort', stop, { once: true });

  return new Promise<RunResult>((resolve, reject) => {
    child.once('error', (e) => {
      options.signal?.removeEventListener('abort', stop);
      clearTimeout(killTimer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      options.signal?.removeEventListener('abort', stop);
      clearTimeout(killTimer);
      out.end();
      err.end();
      resolve({
        code,
        signal,
        aborted,
        stdout: Buffer.concat(stdoutChunks),
        stderr: Buffer.concat(stderrChunks),
        tail,
      });
    });
  });
}

/**
 * What a worker's tools may inherit from its environment — and nothing else: the worker's own
 * variables (DATABASE_URL, MANAGED_POSTGRES_URL, TLS and token paths) never reach git, buildah,
 * podman, helm or kubectl, nor, through them, a build's RUN step or a workload.
 */
export const TOOL_ENVIRONMENT: readonly string[] = [
  'PATH',
  'HOME',
  'LANG',
  'TMPDIR',
  'XDG_RUNTIME_DIR',
  // podman and buildah
  'CONTAINERS_CONF',
  'CONTAINERS_REGISTRIES_CONF',
  'CONTAINERS_STORAGE_CONF',
  'BUILDAH_LAYERS',
  'BUILDAH_ISOLATION',
  'STORAGE_DRIVER',
  'STORAGE_OPTS',
  // git
  'SSH_AUTH_SOCK',
  'GIT_SSL_CAINFO',
  'GIT_SSL_CAPATH',
  // helm and kubectl
  'KUBECONFIG',
  'HELM_CACHE_HOME',
  'HELM_CONFIG_HOME',
  'HELM_DATA_HOME',
  // proxies
  'HTTP_PROXY',
  'HTTPS_PROXY',
  'NO_PROXY',
  'http_proxy',
  'https_proxy',
  'no_proxy',
];

/** The allow-listed part of `env` (default: TOOL_ENVIRONMENT). */
export function minimalEnvironment(
  env: Readonly<Record<string, string | undefined>>,
  names: readonly string[] = TOOL_ENVIRONMENT,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of names) {
    const value = env[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}
