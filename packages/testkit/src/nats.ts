import { spawn } from 'node:child_process';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { track } from './cleanup.ts';
import { startContainer } from './containers.ts';
import { probeTcp, sleep, which } from './proc.ts';
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

/** The client URL nats-server wrote to its ports file (`--ports_file_dir`), once it listens. */
async function portsFileUrl(dir: string, pid: number): Promise<string | undefined> {
  try {
    const ports = JSON.parse(await readFile(path.join(dir, `nats-server_${pid}.ports`), 'utf8')) as { nats?: string[] };
    return ports.nats?.[0];
  } catch {
    return undefined; // not written yet (or half written)
  }
}

const fromBinary: Strategy = async (env) => {
  const binary = which('nats-server', env, ['/usr/sbin', '/usr/local/sbin']);
  if (binary === undefined) throw new Error('nats-server is not on PATH');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'stageline-nats-'));
  const logPath = path.join(dir, 'nats-server.log');
  const log = await open(logPath, 'a');
  // `-p -1`: the server picks a free port itself and reports it in the ports file, so no other
  // process can take the port between choosing and binding it.
  const child = spawn(
    binary,
    ['-a', '127.0.0.1', '-p', '-1', '-js', '-sd', path.join(dir, 'jetstream'), '--ports_file_dir', dir],
    { stdio: ['ignore', log.fd, log.fd] },
  );
  await log.close();
  // A forgotten stop() must not keep the test process alive; the exit hook or global teardown ends it.
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
  let url: string | undefined;
  for (;;) {
    if (exited === undefined && child.pid !== undefined) {
      url ??= await portsFileUrl(dir, child.pid);
      const port = url === undefined ? undefined : Number(new URL(url).port);
      const greeting = port === undefined ? undefined : await probeTcp('127.0.0.1', port, 500);
      if (url !== undefined && greeting !== undefined && greetingHasJetStream(greeting)) break;
    }
    if (exited !== undefined || Date.now() > deadline) {
      const output = await readFile(logPath, 'utf8').catch(() => '');
      await cleanUp();
      throw new Error(`nats-server did not start (${exited ?? 'timeout'}): ${output.trim()}`);
    }
    await sleep(25);
  }
  let stopped: Promise<void> | undefined;
  return {
    url,
    source: 'binary',
    stop: () => {
      stopped ??= cleanUp();
      return stopped;
    },
  };
};

/**
 * A NATS server with JetStream, found in RESOLUTION_ORDER: NATS_URL → 127.0.0.1:4222 (if it
 * speaks NATS with JetStream) → a testcontainers container from the locally built image → nats-server
 * from PATH with -js on a port of its choosing and a temporary store. Memoized per process (see ResolveOptions).
 */
export const resolveNats: (options?: ResolveOptions) => Promise<ResolvedServer> = memoized((options) =>
  resolveWith('NATS', { env: fromEnv, local: fromLocalPort, container: fromContainer, binary: fromBinary }, options),
);
