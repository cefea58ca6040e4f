import { spawnSync } from 'node:child_process';
import { containerToolEnv } from './paths.ts';
import { which } from './proc.ts';

// Servers the kit started in this process, each with a synchronous way to end it: 'exit' handlers
// cannot await, and a test run that forgets stop() must not leave servers behind.
const pending = new Map<symbol, () => void>();
let installed = false;

export function onExit(stopSync: () => void): () => void {
  if (!installed) {
    installed = true;
    process.once('exit', () => {
      for (const stop of pending.values()) {
        try {
          stop();
        } catch {
          // best effort at exit
        }
      }
    });
  }
  const key = Symbol('server');
  pending.set(key, stopSync);
  return () => pending.delete(key);
}

/** Removes a container synchronously with podman (the engine the kit sets up). */
export function removeContainerSync(id: string): void {
  const podman = which('podman');
  if (podman === undefined) return;
  spawnSync(podman, ['rm', '--force', '--time', '0', id], { env: containerToolEnv(), stdio: 'ignore' });
}

/** Label every kit container carries; the vitest global teardown removes its session's leftovers. */
export const SESSION_LABEL = 'stageline.testkit.session';

export function sessionId(env: NodeJS.ProcessEnv = process.env): string {
  return env.STAGELINE_TESTKIT_SESSION ?? `pid-${process.pid}`;
}
