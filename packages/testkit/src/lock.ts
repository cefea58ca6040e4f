import { mkdir, open, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { sleep } from './proc.ts';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Runs `work` while holding `<dir>/<name>.lock`, so parallel test processes (and parallel vitest runs)
 * build an image or start the podman service once. A lock left by a dead process is taken over.
 */
export async function withFileLock<T>(
  dir: string,
  name: string,
  work: () => Promise<T>,
  timeoutMs = 300_000,
): Promise<T> {
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `${name}.lock`);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const handle = await open(file, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const owner = Number.parseInt(await readFile(file, 'utf8').catch(() => ''), 10);
      // An empty file is a lock being written right now; only a recorded dead pid is stale.
      if (Number.isInteger(owner) && owner > 0 && !alive(owner)) {
        await rm(file, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for lock ${file} (held by pid ${owner})`);
      await sleep(100);
    }
  }
  try {
    return await work();
  } finally {
    await rm(file, { force: true });
  }
}
