import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { containerToolEnv, stateDir } from './paths.ts';
import { which } from './proc.ts';

/** What the kit started and how to find it again from another process. */
export type StartedRecord =
  | { kind: 'process'; pid: number; dir: string }
  | { kind: 'postgres'; pgCtl: string; data: string; dir: string; uid?: number; gid?: number }
  | { kind: 'container'; id: string };

/** Label every kit container carries; the vitest global teardown removes its session's leftovers. */
export const SESSION_LABEL = 'stageline.testkit.session';

export function sessionId(env: NodeJS.ProcessEnv = process.env): string {
  return env.STAGELINE_TESTKIT_SESSION ?? `pid-${process.pid}`;
}

function sessionDir(session: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(stateDir(env), 'testkit-sessions', session);
}

/** Removes a container synchronously with podman (the engine the kit sets up). */
export function removeContainerSync(id: string): void {
  const podman = which('podman');
  if (podman === undefined) return;
  spawnSync(podman, ['rm', '--force', '--time', '0', id], { env: containerToolEnv(), stdio: 'ignore' });
}

function commandLineMentions(pid: number, text: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text);
  } catch {
    return false;
  }
}

/** Ends what a record describes, synchronously (it runs in 'exit' handlers, which cannot await). */
export function stopSync(record: StartedRecord): void {
  switch (record.kind) {
    case 'process':
      // The pid may have been reused since: kill it only if it is still the server of that temp dir.
      if (commandLineMentions(record.pid, record.dir)) process.kill(record.pid, 'SIGKILL');
      rmSync(record.dir, { recursive: true, force: true });
      return;
    case 'postgres':
      spawnSync(record.pgCtl, ['-D', record.data, '-m', 'immediate', '-w', 'stop'], {
        stdio: 'ignore',
        cwd: '/',
        ...(record.uid === undefined ? {} : { uid: record.uid }),
        ...(record.gid === undefined ? {} : { gid: record.gid }),
      });
      rmSync(record.dir, { recursive: true, force: true });
      return;
    case 'container':
      removeContainerSync(record.id);
      return;
  }
}

const live = new Map<string, StartedRecord>();
let hooked = false;
let counter = 0;

/**
 * Remembers a server the kit started until its stop() calls the returned `forget`. Two safety nets:
 * a process 'exit' hook, and — under the vitest global setup, whose workers are killed without running
 * 'exit' hooks — a record file the global teardown reaps.
 */
export function track(record: StartedRecord): () => void {
  if (!hooked) {
    hooked = true;
    process.once('exit', () => {
      for (const leftover of live.values()) {
        try {
          stopSync(leftover);
        } catch {
          // best effort at exit
        }
      }
    });
  }
  const key = `${process.pid}-${++counter}`;
  live.set(key, record);
  let file: string | undefined;
  if (process.env.STAGELINE_TESTKIT_SESSION !== undefined) {
    const dir = sessionDir(process.env.STAGELINE_TESTKIT_SESSION);
    mkdirSync(dir, { recursive: true });
    file = path.join(dir, `${key}.json`);
    writeFileSync(file, JSON.stringify(record));
  }
  return () => {
    live.delete(key);
    if (file !== undefined) rmSync(file, { force: true });
  };
}

/** Stops everything a session's workers left running and forgets the session; returns how many. */
export function reapSession(session: string, env: NodeJS.ProcessEnv = process.env): number {
  const dir = sessionDir(session, env);
  let reaped = 0;
  let files: string[] = [];
  try {
    files = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const name of files) {
    try {
      stopSync(JSON.parse(readFileSync(path.join(dir, name), 'utf8')) as StartedRecord);
      reaped++;
    } catch {
      // a half-written record: nothing to stop
    }
  }
  rmSync(dir, { recursive: true, force: true });
  return reaped;
}
