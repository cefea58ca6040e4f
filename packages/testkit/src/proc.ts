import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export interface RunResult {
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  uid?: number;
  gid?: number;
  timeoutMs?: number;
}

/** Runs a program with an argv array (never a shell string) and rejects with its stderr when it fails. */
export function run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      {
        env: options.env ?? process.env,
        ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
        ...(options.uid === undefined ? {} : { uid: options.uid }),
        ...(options.gid === undefined ? {} : { gid: options.gid }),
        timeout: options.timeoutMs ?? 120_000,
        maxBuffer: 16 * 1024 * 1024,
        encoding: 'utf8',
      },
      (error, stdout, stderr) => {
        if (error) {
          const detail = stderr.trim() || stdout.trim() || error.message;
          reject(new Error(`${path.basename(file)} ${args.join(' ')} failed: ${detail}`, { cause: error }));
          return;
        }
        resolve({ stdout, stderr });
      },
    );
  });
}

/** First executable named `name` on PATH, then in `extraDirs` (sbin is often missing from a non-root PATH). */
export function which(
  name: string,
  env: NodeJS.ProcessEnv = process.env,
  extraDirs: readonly string[] = [],
): string | undefined {
  const dirs = [...(env.PATH ?? '').split(path.delimiter).filter((d) => d !== ''), ...extraDirs];
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; keep looking
    }
  }
  return undefined;
}

/** A TCP port the kernel just handed out on 127.0.0.1; the caller binds it right away. */
/** Where freePort looks: below the kernel's ephemeral range (32768–60999 here), above our fixed ports. */
const TEST_PORTS = { from: 20_000, to: 32_000 };

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A port free on 127.0.0.1 now, for a server a test starts next. Not one the kernel would hand out:
 * a port from listen(0) lies in the ephemeral range, where the kernel also picks the local port of
 * every outgoing connection — between our check and the server's bind, one of the many connections a
 * test stack opens could take it (EADDRINUSE). Random ports below that range, never our fixed ones.
 */
export async function freePort(): Promise<number> {
  for (let tries = 0; tries < 200; tries++) {
    const port = TEST_PORTS.from + Math.floor(Math.random() * (TEST_PORTS.to - TEST_PORTS.from));
    if (await bindable(port)) return port;
  }
  throw new Error(`no free port on 127.0.0.1 between ${TEST_PORTS.from} and ${TEST_PORTS.to}`);
}

/**
 * Connects to host:port and returns the server's first line (NATS greets with `INFO {...}`), or what
 * it sent so far ('' if nothing) when the timeout passes; undefined when nothing listens.
 */
export function probeTcp(host: string, port: number, timeoutMs = 1_000): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let connected = false;
    let received = '';
    const done = (value: string | undefined): void => {
      socket.removeAllListeners();
      socket.destroy();
      resolve(value);
    };
    socket.setTimeout(timeoutMs, () => done(connected ? received : undefined));
    socket.once('connect', () => {
      connected = true;
    });
    socket.on('data', (chunk) => {
      received += chunk.toString('utf8');
      if (received.includes('\n')) done(received);
    });
    socket.once('end', () => done(received));
    socket.once('error', () => done(undefined));
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
