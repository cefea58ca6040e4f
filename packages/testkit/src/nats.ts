import { spawn } from 'node:child_process';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { track } from './cleanup.ts';
import { startContainer } from './containers.ts';
import { freePort, probeTcp, sleep, which } from './proc.ts';
import { external, memoized, type ResolvedServer, type ResolveOptions, resolveWith, type Strategy } from './resolve.ts';

export const NATS_LOCAL_PORT = 4222;

/** True when a NATS greeting (`INFO {...}`) advertises JetStream. */
export function greetingHasJetStream(greeting: string): boolean {
  if (!greeting.startsWith('INFO ')) return false;
  try {
    const info = JSON.parse(greeting.slice(5).split('\r\n')[0] ?? '') as { jetstream?: unknown };
    return info.jetstream === true;
  } catch {
    return false;
  }
}

const fromEnv: Strategy = async (env) => {
  if (!env.NATS_URL) throw new Error('NATS_URL is not set');
  return external(env.NATS_URL, 'env');
};

const fromLocalPort: Strategy = async () => {
  const greeting = await probeTcp('127.0.0.1', NATS_LOCAL_PORT);
  if (greeting === undefined) throw new Error(`nothing listens on 127.0.0.1:${NATS_LOCAL_PORT}`);
  // A server without JetStream is no use to Stageline; better to start one that has it.
  if (!greetingHasJetStream(greeting)) throw new Error(`127.0.0.1:${NATS_LOCAL_PORT} is not NATS with JetStream`);
  return external(`nats://127.0.0.1:${NATS_LOCAL_PORT}`, 'local');
};

const fromContainer: Strategy = async () => {
  const container = await startContainer({
    image: 'nats',
    command: ['-js', '-sd', '/data'],
    port: NATS_LOCAL_PORT,
    readyLog: /Server is ready/,
  });
  return { url: `nats://${container.host}:${container.port}`, source: 'container', stop: container.stop };
};

async function startBinaryOnce(binary: string): Promise<ResolvedServer | 'port-taken'> {
  const port = await freePort();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'stageline-nats-'));
  const logPath = path.join(dir, 'nats-server.log');
  const log = await open(logPath, 'a');
  const child = spawn(binary, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', path.join(dir, 'jetstream')], {
    stdio: ['ignore', log.fd, log.fd],
  });
  await log.close();
  // A forgotten stop() must not keep the test process alive; the exit hook ends the server.
  child.unref();
  let exited: string | undefined;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = `exited with ${signal ?? code}`;
      resolve();
    });
    child.once('error', (error) => {
      exited = error.message;
      resolve();
    });
  });
  const forget = child.pid === undefined ? () => {} : track({ kind: 'process', pid: child.pid, dir });
  const cleanUp = async (): Promise<void> => {
    forget();
    if (exited === undefined) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exit;
      clearTimeout(killer);
    }
    await rm(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + 15_000;
  for (;;) {
    const greeting = exited === undefined ? await probeTcp('127.0.0.1', port, 500) : undefined;
    if (greeting !== undefined && greetingHasJetStream(greeting)) break;
    if (exited !== undefined || Date.now() > deadline) {
      const output = await readFile(logPath, 'utf8').catch(() => '');
      await cleanUp();
      if (/address already in use/i.test(output)) return 'port-taken';
      throw new Error(`nats-server on port ${port} did not start (${exited ?? 'timeout'}): ${output.trim()}`);
    }
    await sleep(25);
  }
  let stopped: Promise<void> | undefined;
  return {
    url: `nats://127.0.0.1:${port}`,
    source: 'binary',
    stop: () => {
      stopped ??= cleanUp();
      return stopped;
    },
  };
}

const fromBinary: Strategy = async (env) => {
  const binary = which('nats-server', env, ['/usr/sbin', '/usr/local/sbin']);
  if (binary === undefined) throw new Error('nats-server is not on PATH');
  // Another process can grab the free port between allocation and bind; try a few.
  for (let attempt = 0; attempt < 3; attempt++) {
    const server = await startBinaryOnce(binary);
    if (server !== 'port-taken') return server;
  }
  throw new Error('nats-server lost the race for a free port three times');
};

/**
 * A NATS server with JetStream, found in DESIGN.md §8's order: NATS_URL → 127.0.0.1:4222 (if it
 * speaks NATS with JetStream) → a testcontainers container from the locally built image → nats-server
 * from PATH with -js on a free port and a temporary store. Memoized per process (see ResolveOptions).
 */
export const resolveNats: (options?: ResolveOptions) => Promise<ResolvedServer> = memoized((options) =>
  resolveWith('NATS', { env: fromEnv, local: fromLocalPort, container: fromContainer, binary: fromBinary }, options),
);
