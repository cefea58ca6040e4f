import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { expect, it } from 'vitest';
import { ensurePodmanSocket, pingDockerSocket, podmanSocketPath } from '../src/index.ts';
import { stateDir } from '../src/paths.ts';
import { which } from '../src/proc.ts';

it('serves the Docker-compatible API on the state dir socket and reuses a running service', async () => {
  if (which('podman') === undefined) {
    // Nothing to start: the caller's DOCKER_HOST (if any) is all there is.
    const env: NodeJS.ProcessEnv = { PATH: '/nonexistent' };
    expect(await ensurePodmanSocket({ env })).toBeUndefined();
    expect(env.DOCKER_HOST).toBeUndefined();
    return;
  }
  // A private environment object: DOCKER_HOST may already be set in process.env by the global setup.
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.DOCKER_HOST;
  const socket = podmanSocketPath(env);
  const dockerHost = await ensurePodmanSocket({ env });
  expect(dockerHost).toBe(`unix://${socket}`);
  expect(env.DOCKER_HOST).toBe(dockerHost);
  expect(env.TESTCONTAINERS_RYUK_DISABLED).toBe('true');
  expect(await pingDockerSocket(socket)).toBe(true);

  const pidFile = path.join(stateDir(env), 'podman-service.pid');
  const pidBefore = await readFile(pidFile, 'utf8');
  const again: NodeJS.ProcessEnv = { ...env };
  delete again.DOCKER_HOST;
  expect(await ensurePodmanSocket({ env: again })).toBe(dockerHost);
  // Reused, not restarted: the same service process still owns the socket.
  expect(await readFile(pidFile, 'utf8')).toBe(pidBefore);
  expect(() => process.kill(Number.parseInt(pidBefore, 10), 0)).not.toThrow();
});

it('leaves an explicit DOCKER_HOST alone', async () => {
  const env: NodeJS.ProcessEnv = { DOCKER_HOST: 'tcp://engine.example.invalid:2375' };
  expect(await ensurePodmanSocket({ env })).toBe('tcp://engine.example.invalid:2375');
  expect(env.TESTCONTAINERS_RYUK_DISABLED).toBeUndefined();
});

it('says no for a socket nobody serves', async () => {
  expect(await pingDockerSocket(path.join(stateDir(), 'nobody-here.sock'))).toBe(false);
});
