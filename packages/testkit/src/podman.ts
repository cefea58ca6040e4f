import { spawn } from 'node:child_process';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { withFileLock } from './lock.ts';
import { containerToolEnv, stateDir } from './paths.ts';
import { sleep, which } from './proc.ts';

export interface EnsurePodmanSocketOptions {
  /** The environment read and updated (DOCKER_HOST, TESTCONTAINERS_*); default process.env. */
  env?: NodeJS.ProcessEnv;
  /** How long to wait for a freshly started service to answer; default 30 s. */
  timeoutMs?: number;
}

/** True when `GET /_ping` on the unix socket answers 200 OK (the Docker-compatible API is up). */
export function pingDockerSocket(socketPath: string, timeoutMs = 2_000): Promise<boolean> {
  return new Promise((resolve) => {
    const request = http.request({ socketPath, path: '/_ping', method: 'GET', timeout: timeoutMs }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        body += chunk;
      });
      response.on('end', () => resolve(response.statusCode === 200 && body.trim() === 'OK'));
      response.on('error', () => resolve(false));
    });
    request.on('timeout', () => request.destroy(new Error('timeout')));
    request.on('error', () => resolve(false));
    request.end();
  });
}

/** Path of the kit's podman API socket: `<state dir>/podman.sock`. */
export function podmanSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(stateDir(env), 'podman.sock');
}

function useSocket(env: NodeJS.ProcessEnv, socketPath: string): string {
  const dockerHost = `unix://${socketPath}`;
  env.DOCKER_HOST = dockerHost;
  // Ryuk's image lives on Docker Hub, which is unreachable; containers are stopped by the kit instead.
  env.TESTCONTAINERS_RYUK_DISABLED = 'true';
  // testcontainers guesses a bridge gateway when it sees /.dockerenv, but this socket is a local podman
  // whose published ports are on this host's loopback.
  env.TESTCONTAINERS_HOST_OVERRIDE ??= '127.0.0.1';
  return dockerHost;
}

/**
 * Makes a Docker-compatible API available to testcontainers through podman.
 *
 * When DOCKER_HOST is already set it is left alone and returned. Otherwise, if `podman` is on PATH,
 * reuses `<state dir>/podman.sock` when it answers, or starts `podman system service --time=0` on it in
 * the background (it outlives this process so later runs reuse it), then sets DOCKER_HOST and
 * TESTCONTAINERS_RYUK_DISABLED=true. Returns the DOCKER_HOST in effect, or undefined when there is no
 * engine to offer (no podman, no DOCKER_HOST).
 */
export async function ensurePodmanSocket(options: EnsurePodmanSocketOptions = {}): Promise<string | undefined> {
  const env = options.env ?? process.env;
  if (env.DOCKER_HOST) return env.DOCKER_HOST;
  const podman = which('podman', env);
  if (podman === undefined) return undefined;

  const dir = stateDir(env);
  const socketPath = podmanSocketPath(env);
  if (await pingDockerSocket(socketPath)) return useSocket(env, socketPath);

  await withFileLock(dir, 'podman-service', async () => {
    // Another process may have started it while this one waited for the lock.
    if (await pingDockerSocket(socketPath)) return;
    await mkdir(dir, { recursive: true });
    await rm(socketPath, { force: true });
    const logPath = path.join(dir, 'podman-service.log');
    const log = await open(logPath, 'a');
    try {
      const child = spawn(podman, ['system', 'service', '--time=0', `unix://${socketPath}`], {
        detached: true,
        stdio: ['ignore', log.fd, log.fd],
        env: containerToolEnv(env),
      });
      let exited: string | undefined;
      child.once('exit', (code, signal) => {
        exited = `exited with ${signal ?? code}`;
      });
      child.once('error', (error) => {
        exited = error.message;
      });
      child.unref();
      if (child.pid !== undefined) await writeFile(path.join(dir, 'podman-service.pid'), `${child.pid}\n`);
      const deadline = Date.now() + (options.timeoutMs ?? 30_000);
      while (!(await pingDockerSocket(socketPath, 500))) {
        if (exited !== undefined || Date.now() > deadline) {
          const tail = (await readFile(logPath, 'utf8').catch(() => '')).split('\n').slice(-10).join('\n');
          throw new Error(`podman system service on ${socketPath} did not come up (${exited ?? 'timeout'}): ${tail}`);
        }
        await sleep(50);
      }
    } finally {
      await log.close();
    }
  });
  return useSocket(env, socketPath);
}
