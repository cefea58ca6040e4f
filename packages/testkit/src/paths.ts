import { existsSync } from 'node:fs';
import path from 'node:path';

/** The repository root, found from this file so the kit works from any working directory. */
export const repoRoot: string = path.resolve(import.meta.dirname, '../../..');

/** Where sockets, pid files and locks live: `$STAGELINE_STATE`, else `<repo>/.stageline` (as env.sh sets it). */
export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.STAGELINE_STATE ?? path.join(repoRoot, '.stageline');
}

/**
 * podman/buildah need the project's containers.conf on machines without systemd (runc, cgroupfs, file events).
 * env.sh exports it; a shell that did not source env.sh still gets the repository's copy.
 */
export function containersConf(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.CONTAINERS_CONF) return env.CONTAINERS_CONF;
  const fallback = path.join(repoRoot, 'deploy/dev/containers.conf');
  return existsSync(fallback) ? fallback : undefined;
}

/** The environment podman and buildah run with: the caller's, plus CONTAINERS_CONF. */
export function containerToolEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const conf = containersConf(env);
  return conf === undefined ? { ...env } : { ...env, CONTAINERS_CONF: conf };
}
