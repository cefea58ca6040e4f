import { spawn } from 'node:child_process';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { track } from './cleanup.ts';
import { freePort, sleep, which } from './proc.ts';
import { external, memoized, type ResolvedServer, type ResolveOptions, resolveWith, type Strategy } from './resolve.ts';

/** Where deploy/dev/registry.sh runs the mirror registry. */
export const REGISTRY_LOCAL_PORT = 5000;

/** True when `GET <url>/v2/` answers like a distribution registry (200, or 401 asking for credentials). */
export async function registryAnswers(url: string, timeoutMs = 1_000): Promise<boolean> {
  try {
    const response = await fetch(new URL('/v2/', url), { signal: AbortSignal.timeout(timeoutMs) });
    await response.body?.cancel();
    return (
      (response.status === 200 || response.status === 401) &&
      response.headers.get('docker-distribution-api-version') === 'registry/2.0'
    );
  } catch {
    return false;
  }
}

/** REGISTRY_URL may be `host:port` (as image references name registries) or an http(s) URL. */
function normalizeUrl(value: string): string {
  const url = new URL(/^[a-z]+:\/\//.test(value) ? value : `http://${value}`);
  return `${url.protocol}//${url.host}`;
}

const fromEnv: Strategy = async (env) => {
  if (!env.REGISTRY_URL) throw new Error('REGISTRY_URL is not set');
  return external(normalizeUrl(env.REGISTRY_URL), 'env');
};

const fromLocalPort: Strategy = async () => {
  const url = `http://127.0.0.1:${REGISTRY_LOCAL_PORT}`;
  if (!(await registryAnswers(url)))
    throw new Error(`no registry answers GET /v2/ on 127.0.0.1:${REGISTRY_LOCAL_PORT}`);
  return external(url, 'local');
};

const fromContainer: Strategy = async () => {
  // The registry image lives on Docker Hub, which cannot be reached; the apt binary does the same job.
  throw new Error('no local registry image (nothing can be pulled); the docker-registry binary is used instead');
};

function registryConfig(storage: string, port: number): string {
  return [
    'version: 0.1',
    'log:',
    '  level: warn',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${storage}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    '',
  ].join('\n');
}

/** One attempt on one port: resolves the server, or throws (with the registry's output) if it did not come up. */
async function startOnPort(binary: string, dir: string, port: number): Promise<ResolvedServer> {
  const configPath = path.join(dir, 'config.yml');
  await writeFile(configPath, registryConfig(path.join(dir, 'storage'), port));
  const logPath = path.join(dir, 'registry.log');
  const log = await open(logPath, 'a');
  const child = spawn(binary, ['serve', configPath], { stdio: ['ignore', log.fd, log.fd] });
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
  const end = async (): Promise<void> => {
    forget();
    if (exited === undefined) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exit;
      clearTimeout(killer);
    }
  };
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (exited === undefined && (await registryAnswers(url, 500))) break;
    if (exited !== undefined || Date.now() > deadline) {
      const output = await readFile(logPath, 'utf8').catch(() => '');
      await end();
      throw new Error(
        `docker-registry did not start on ${port} (${exited ?? 'timeout'}): ${output.trim().slice(-2000)}`,
      );
    }
    await sleep(25);
  }
  let stopped: Promise<void> | undefined;
  return {
    url,
    source: 'binary',
    stop: () => {
      stopped ??= end().then(() => rm(dir, { recursive: true, force: true }));
      return stopped;
    },
  };
}

const fromBinary: Strategy = async (env) => {
  const binary = which('docker-registry', env, ['/usr/bin', '/usr/local/bin']);
  if (binary === undefined) throw new Error('docker-registry is not on PATH (apt install docker-registry)');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'stageline-registry-'));
  // The registry cannot pick its own port and report it: choose one, and try another if it was taken
  // between choosing and binding.
  const errors: string[] = [];
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnPort(binary, dir, await freePort());
    } catch (error) {
      errors.push(error instanceof Error ? error.message : String(error));
    }
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(errors.join('; '));
};

/**
 * An OCI distribution registry (plain HTTP), found in RESOLUTION_ORDER: REGISTRY_URL (`host:port` or
 * a URL) → the mirror on 127.0.0.1:5000 if it answers GET /v2/ → (no container: its image cannot be
 * pulled) → `docker-registry serve` from apt on a free port with a temporary storage directory (stop()
 * kills it and removes the directory). `url` is `http://host:port`; `new URL(url).host` is the name
 * image references use. Memoized per process (see ResolveOptions).
 */
export const resolveRegistry: (options?: ResolveOptions) => Promise<ResolvedServer> = memoized((options) =>
  resolveWith(
    'registry',
    { env: fromEnv, local: fromLocalPort, container: fromContainer, binary: fromBinary },
    options,
  ),
);
