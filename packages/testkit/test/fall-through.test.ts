import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

it('without a container engine, testcontainers fails fast and resolution falls through to the binary', async () => {
  const state = await mkdtemp(path.join(os.tmpdir(), 'stageline-noengine-'));
  try {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [path.join(import.meta.dirname, 'fixtures/no-engine.ts')],
      // Only node on PATH: no podman to start a socket with (nats-server is found in /usr/sbin).
      { env: { PATH: path.dirname(process.execPath), HOME: state, STAGELINE_STATE: state }, timeout: 30_000 },
    );
    const result = JSON.parse(stdout) as { containerError?: string; fallback?: { source: string; url: string } };
    expect(result.containerError).toMatch(/container: Could not find a working container runtime strategy/);
    expect(result.fallback?.source).toBe('binary');
    expect(result.fallback?.url).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
  } finally {
    await rm(state, { recursive: true, force: true });
  }
});
