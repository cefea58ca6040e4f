import { describe, expect, it } from 'vitest';
import { ensureLocalImage, NATS_LOCAL_PORT, resolveNats } from '../src/index.ts';
import { which } from '../src/proc.ts';
import { jetStreamRoundTrip, natsUnreachable } from './jetstream-round-trip.ts';

describe('resolveNats', () => {
  it('takes NATS_URL from the environment before anything else', async () => {
    // Nothing listens there: an explicit URL is used as given, never second-guessed.
    const server = await resolveNats({ env: { NATS_URL: 'nats://nats.example.invalid:4999' } });
    expect(server).toMatchObject({ url: 'nats://nats.example.invalid:4999', source: 'env' });
    await server.stop();
  });

  it('finds the server on the standard local port as source local', async () => {
    const server = await resolveNats({ strategy: 'local' });
    expect(server).toMatchObject({ url: `nats://127.0.0.1:${NATS_LOCAL_PORT}`, source: 'local' });
    expect((await jetStreamRoundTrip(server.url)).received).toMatch(/^hello /);
  });

  it('memoizes the default resolution per process', async () => {
    const first = await resolveNats();
    const second = await resolveNats();
    expect(second).toBe(first);
    // Forced strategies are the caller's own and are not shared.
    expect(await resolveNats({ strategy: 'local' })).not.toBe(first);
  });

  it('starts nats-server from PATH with JetStream on a free port, and stop() ends it', async () => {
    const server = await resolveNats({ strategy: 'binary' });
    expect(server.source).toBe('binary');
    expect(server.url).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
    expect(server.url).not.toBe(`nats://127.0.0.1:${NATS_LOCAL_PORT}`);
    const { sent, received } = await jetStreamRoundTrip(server.url);
    expect(received).toBe(sent);
    await server.stop();
    expect(await natsUnreachable(server.url)).toBe(true);
  });

  it('starts NATS with testcontainers on the podman socket from the locally built image', async () => {
    if (which('podman') === undefined && !process.env.DOCKER_HOST) {
      // No engine on this machine: the strategy must refuse quickly with testcontainers' own reason.
      await expect(resolveNats({ strategy: 'container' })).rejects.toThrow(
        /Could not find a working container runtime strategy/,
      );
      return;
    }
    const image = await ensureLocalImage('nats');
    expect(image).toMatch(/^localhost\/stageline-test\/nats-server:[0-9a-f]{16}$/);
    const server = await resolveNats({ strategy: 'container' });
    try {
      expect(server.source).toBe('container');
      expect(process.env.DOCKER_HOST).toMatch(/^unix:\/\/.*podman\.sock$/);
      expect(process.env.TESTCONTAINERS_RYUK_DISABLED).toBe('true');
      const { sent, received, seq } = await jetStreamRoundTrip(server.url);
      expect(received).toBe(sent);
      // A fresh server: the first message of the first stream.
      expect(seq).toBe(1);
    } finally {
      await server.stop();
    }
    expect(await natsUnreachable(server.url)).toBe(true);
  });

  it('names every strategy it tried when none works', async () => {
    await expect(resolveNats({ strategy: ['env'], env: {} })).rejects.toThrow(/env: NATS_URL is not set/);
  });
});
