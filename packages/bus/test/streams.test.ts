import { nanos } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Bus, STREAM_KEYS } from '../src/index.ts';
import { connectBus, deletePrefixStreams, NATS_URL, randomId, randomPrefix, silentLog, text } from './support.ts';

const prefix = randomPrefix();
let a: Bus;
let b: Bus;

beforeAll(async () => {
  [a, b] = await Promise.all([connectBus(prefix, 'streams-a'), connectBus(prefix, 'streams-b')]);
});

afterAll(async () => {
  await Promise.all([a?.close(), b?.close()]);
  await deletePrefixStreams(prefix);
});

async function streamsOfPrefix(bus: Bus): Promise<string[]> {
  const names: string[] = [];
  for await (const n of bus.jsm.streams.names()) if (n.startsWith(`${bus.subjects.streamPrefix}_`)) names.push(n);
  return names.sort();
}

describe('ensureStreams', () => {
  it('creates the seven streams, concurrently from two processes and again after', async () => {
    await Promise.all([a.ensureStreams(), b.ensureStreams()]);
    const again = await a.ensureStreams();
    expect(await streamsOfPrefix(a)).toEqual(STREAM_KEYS.map((k) => a.subjects.streams[k]).sort());
    expect(again.buildJobs.config.retention).toBe('workqueue');
    expect(again.deployJobs.config.retention).toBe('workqueue');
    expect(again.requests.config.retention).toBe('limits');
    expect(again.results.config.subjects).toEqual([...a.subjects.streamSubjects.results]);
    expect(again.events.config.max_age).toBe(nanos(7 * 24 * 3_600_000));
    expect(again.logs.config.max_bytes).toBeGreaterThan(0);
    expect(again.logs.config.max_age).toBeGreaterThan(0);
    for (const k of STREAM_KEYS) expect(again[k].config.duplicate_window).toBe(nanos(120_000));
  });

  it('brings an existing stream to a changed configuration', async () => {
    const { Bus } = await import('../src/index.ts');
    const c = await Bus.connect({
      url: NATS_URL,
      prefix,
      name: 'streams-c',
      log: silentLog,
      streamLimits: { eventsMaxAgeMs: 3_600_000 },
    });
    try {
      const infos = await c.ensureStreams();
      expect(infos.events.config.max_age).toBe(nanos(3_600_000));
      expect((await a.jsm.streams.info(a.subjects.streams.events)).config.max_age).toBe(nanos(3_600_000));
    } finally {
      await c.close();
    }
    const back = await a.ensureStreams();
    expect(back.events.config.max_age).toBe(nanos(7 * 24 * 3_600_000));
  });
});

describe('publish', () => {
  it('stores a message once when the same msgId is published twice', async () => {
    await a.ensureStreams();
    const subject = a.subjects.requests(randomId('env'));
    const stream = a.subjects.streams.requests;
    const before = (await a.jsm.streams.info(stream)).state.messages;
    const first = await a.publish(subject, text('one'), { msgId: 'req-1', traceparent: '00-abc-def-01' });
    const second = await b.publish(subject, text('one again'), { msgId: 'req-1' });
    expect(first).toMatchObject({ stream, duplicate: false });
    expect(second).toEqual({ stream, seq: first.seq, duplicate: true });
    expect((await a.jsm.streams.info(stream)).state.messages).toBe(before + 1);
    const stored = await a.jsm.streams.getMessage(stream, { last_by_subj: subject });
    expect(stored?.seq).toBe(first.seq);
    expect(stored?.header.get('Nats-Msg-Id')).toBe('req-1');
    expect(stored?.header.get('traceparent')).toBe('00-abc-def-01');
  });

  it('refuses a subject with a wildcard and reports a subject no stream captures as UNAVAILABLE', async () => {
    await expect(a.publish(`${prefix}.requests.*`, text('x'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(a.publish(`${prefix}.nowhere.x`, text('x'))).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      retryable: true,
    });
  });
});

describe('ensureConsumer', () => {
  it('creates a durable pull consumer idempotently, sizing max_ack_pending for the fleet', async () => {
    await a.ensureStreams();
    const options = { stream: 'buildJobs' as const, durable: 'build-workers' };
    const [x, y] = await Promise.all([a.ensureConsumer(options), b.ensureConsumer(options)]);
    const z = await a.ensureConsumer(options);
    for (const ci of [x, y, z]) {
      expect(ci.name).toBe(a.subjects.consumerName('build-workers'));
      expect(ci.config).toMatchObject({ ack_policy: 'explicit', max_ack_pending: 7 * 16, max_deliver: 5 });
      expect(ci.config.ack_wait).toBe(nanos(30_000));
      expect(ci.config.backoff ?? []).toEqual([]);
    }
    const resized = await b.ensureConsumer({ ...options, slots: 3, expectedProcesses: 4 });
    expect(resized.config.max_ack_pending).toBe(12);
    const withBackoff = await b.ensureConsumer({ ...options, backoffMs: [5_000, 10_000] });
    expect(withBackoff.config.backoff).toEqual([nanos(5_000), nanos(10_000)]);
    expect(withBackoff.config.ack_wait).toBe(nanos(5_000));
    const without = await a.ensureConsumer({ ...options, ackWaitMs: 20_000 });
    expect(without.config.backoff ?? []).toEqual([]);
    expect(without.config.ack_wait).toBe(nanos(20_000));
  });
});
