// The cross-process build lock: one build per cache key; a redelivered job takes over its own lock.

import { Bus } from '@stageline/bus';
import { createLogger } from '@stageline/log';
import { useIsolatedEnvironment } from '@stageline/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BuildLocks } from '../src/adapters/nats/build-lock.ts';

const isolated = useIsolatedEnvironment();
const log = createLogger({ service: 'build-lock-test', level: 'silent' });
let bus: Bus;
let locks: BuildLocks;

beforeAll(async () => {
  bus = await Bus.connect({ url: isolated.natsUrl, prefix: isolated.busPrefix, name: 'build-lock-test', log });
  // A long lease: nothing here may age out during the test.
  locks = await BuildLocks.open(bus, { ttlMs: 120_000, pollMs: 50, log });
});
afterAll(async () => {
  await bus?.close();
});

describe('build locks', () => {
  it('make another job wait while the key is held', async () => {
    const { lock } = await locks.acquire('key-a', { holder: 'job one' });
    const waiting = locks.acquire('key-a', { holder: 'job two', signal: AbortSignal.timeout(1_000) });
    await expect(waiting).rejects.toThrow();
    await lock.release();
    const { lock: next } = await locks.acquire('key-a', { holder: 'job two' });
    await next.release();
  });

  it('let a redelivery of the same job take over the lock its dead earlier delivery held', async () => {
    // The first delivery's worker died holding the lock: never released, its lease far from over.
    const { lock: dead } = await locks.acquire('key-b', { holder: 'job three' });
    const { lock } = await locks.acquire('key-b', { holder: 'job three', signal: AbortSignal.timeout(5_000) });
    expect(lock.lost).toBe(false);
    await lock.release();
    await dead.release();
  });
});
