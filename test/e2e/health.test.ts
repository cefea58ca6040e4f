// Health means ready: a service's gRPC health and its plaintext /readyz follow its database and its
// bus — NOT_SERVING (503) while one does not answer, SERVING (200) again once both do; /livez stays
// 200 throughout. The planner runs on a PostgreSQL and a NATS server of this file's own, which the
// test stops and starts (never the machine's shared ones).
import { checkHealth } from '@stageline/grpc';
import { type FaultServer, startOwnNats, startOwnPostgres } from '@stageline/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import { useStack } from './stack.ts';

const postgres: FaultServer = await startOwnPostgres();
const nats: FaultServer = await startOwnNats();
process.env.DATABASE_URL = postgres.url;
process.env.NATS_URL = nats.url;

// Registered before the stack's own hooks, so it runs after them (afterAll hooks run in reverse).
afterAll(async () => {
  await postgres.destroy();
  await nats.destroy();
}, 60_000);

const stack = useStack({ services: ['planner'], env: { HEALTH_LISTEN: '127.0.0.1:0' } });

/** The probe port the planner logged at start. */
function healthAddress(): string {
  for (const line of stack.logs('planner').split('\n')) {
    if (!line.includes('health port listening')) continue;
    return (JSON.parse(line) as { address: string }).address;
  }
  throw new Error(`the planner logged no health port:\n${stack.logs('planner').slice(-2000)}`);
}

async function probe(path: string): Promise<{ status: number; body: string }> {
  const response = await fetch(`http://${healthAddress()}${path}`);
  return { status: response.status, body: await response.text() };
}

async function grpcHealth(): Promise<string> {
  const planner = stack.procs.find((p) => p.name === 'planner')!;
  return checkHealth(planner.address, { security: { ca: stack.security.ca } }).catch((e: unknown) => String(e));
}

/** A deadline for progress, not a timing assertion. */
async function eventually(what: string, probeOnce: () => Promise<boolean>, deadlineMs = 30_000): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!(await probeOnce())) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe('health means ready', () => {
  it('is ready, and alive, when the database and the bus answer', async () => {
    expect(await probe('/livez')).toEqual({ status: 200, body: 'ok\n' });
    expect(await probe('/readyz')).toEqual({ status: 200, body: 'ok\n' });
    expect(await grpcHealth()).toBe('SERVING');
  });

  it('is not ready while PostgreSQL is down, and ready again when it is back', async () => {
    await postgres.stop();
    try {
      await eventually('/readyz 503', async () => (await probe('/readyz')).status === 503);
      expect((await probe('/readyz')).body).toContain('database does not answer');
      await eventually('gRPC NOT_SERVING', async () => (await grpcHealth()) === 'NOT_SERVING');
      expect((await probe('/livez')).status).toBe(200);
    } finally {
      await postgres.start();
    }
    await eventually('/readyz 200 again', async () => (await probe('/readyz')).status === 200);
    await eventually('gRPC SERVING again', async () => (await grpcHealth()) === 'SERVING');
  });

  it('is not ready while NATS is down, and ready again when it is back', async () => {
    await nats.stop();
    try {
      await eventually('/readyz 503', async () => (await probe('/readyz')).status === 503);
      expect((await probe('/readyz')).body).toContain('bus does not answer');
      await eventually('gRPC NOT_SERVING', async () => (await grpcHealth()) === 'NOT_SERVING');
    } finally {
      await nats.start();
    }
    await eventually('/readyz 200 again', async () => (await probe('/readyz')).status === 200);
    await eventually('gRPC SERVING again', async () => (await grpcHealth()) === 'SERVING');
  });
});
