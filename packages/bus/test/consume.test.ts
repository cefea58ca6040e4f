import { DomainError, invalidArgument } from '@stageline/errors';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Bus, type BusMessage, type Consumption, HEADERS, outcome } from '../src/index.ts';
import { connectBus, decode, deletePrefixStreams, eventually, Gate, randomId, randomPrefix, text } from './support.ts';

const prefix = randomPrefix();
let a: Bus;
let b: Bus;
const running: Consumption[] = [];
const gates: Gate[] = [];
const newGate = (): Gate => {
  const g = new Gate();
  gates.push(g);
  return g;
};

beforeAll(async () => {
  [a, b] = await Promise.all([connectBus(prefix, 'consume-a'), connectBus(prefix, 'consume-b')]);
  await a.ensureStreams();
});

afterEach(async () => {
  // A failed test may leave handlers parked; stop() would wait for them forever.
  for (const g of gates.splice(0)) g.open();
  await Promise.all(running.splice(0).map((c) => c.stop()));
});

afterAll(async () => {
  await Promise.all([a?.close(), b?.close()]);
  await deletePrefixStreams(prefix);
});

const fast = { baseMs: 50, maxMs: 200 };

async function publishMany(subject: string, bodies: string[]): Promise<void> {
  for (const body of bodies) await a.publish(subject, text(body), { msgId: randomId(body) });
}

/** Messages still stored on one subject (for work queues: not yet acknowledged or terminated). */
async function storedOn(streamKey: 'buildJobs' | 'deployJobs', subject: string): Promise<number> {
  const info = await a.jsm.streams.info(a.subjects.streams[streamKey], { subjects_filter: subject });
  return info.state.subjects?.[subject] ?? 0;
}

async function consumerInfo(stream: string, durable: string) {
  return await a.jsm.consumers.info(stream, a.subjects.consumerName(durable));
}

/** Watches JetStream's "message terminated" advisories of one consumer. */
function watchTerminations(bus: Bus, stream: string, durable: string): { count(): number; stop(): void } {
  let count = 0;
  const sub = bus.nc.subscribe(
    `$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.${stream}.${bus.subjects.consumerName(durable)}`,
    {
      callback: () => {
        count++;
      },
    },
  );
  return { count: () => count, stop: () => sub.unsubscribe() };
}

async function deadLetter(bus: Bus, originalSubject: string) {
  return await bus.jsm.streams.getMessage(bus.subjects.streams.dlq, {
    last_by_subj: bus.subjects.dlq(originalSubject),
  });
}

describe('consume: slots', () => {
  it('never holds more than `slots` messages in one process', async () => {
    const subject = a.subjects.buildJobs(randomId('dep'));
    const durable = randomId('slots');
    await publishMany(
      subject,
      Array.from({ length: 10 }, (_, i) => `job-${i}`),
    );
    const gate = newGate();
    let current = 0;
    let max = 0;
    let done = 0;
    const c = await a.consume({
      stream: 'buildJobs',
      durable,
      filterSubject: subject,
      slots: 3,
      handler: async () => {
        current++;
        max = Math.max(max, current);
        try {
          await gate.pass();
        } finally {
          current--;
          done++;
        }
      },
    });
    running.push(c);
    // Free one slot at a time: a process that pulled for all its slots instead of the free ones
    // would now hold more than 3.
    for (let released = 0; released < 10; released++) {
      const expected = Math.min(3, 10 - released);
      await eventually(() => gate.parked === expected && c.inFlight() === expected, `${expected} handlers parked`);
      // What the server sees this process holding: the handlers' messages, nothing buffered beyond them.
      expect((await consumerInfo(a.subjects.streams.buildJobs, durable)).num_ack_pending).toBe(expected);
      gate.releaseOne();
    }
    await eventually(() => done === 10, 'all done');
    expect(max).toBe(3);
    // Work queue: acknowledged jobs are gone.
    await eventually(async () => (await storedOn('buildJobs', subject)) === 0, 'work queue empty');
    expect((await consumerInfo(a.subjects.streams.buildJobs, durable)).config.max_ack_pending).toBe(3 * 16);
  });

  it('adds the slots of every process on one durable (3 + 3 = 6)', async () => {
    const subject = a.subjects.deployJobs(randomId('dep'));
    const durable = randomId('fleet');
    await publishMany(
      subject,
      Array.from({ length: 12 }, (_, i) => `job-${i}`),
    );
    const gate = newGate();
    let current = 0;
    let max = 0;
    let done = 0;
    const perBus = { a: 0, b: 0 };
    const handlerFor = (who: 'a' | 'b') => async () => {
      current++;
      max = Math.max(max, current);
      perBus[who]++;
      try {
        await gate.pass();
      } finally {
        current--;
        perBus[who]--;
        done++;
      }
    };
    const options = { stream: 'deployJobs' as const, durable, filterSubject: subject, slots: 3 };
    const ca = await a.consume({ ...options, handler: handlerFor('a') });
    const cb = await b.consume({ ...options, handler: handlerFor('b') });
    running.push(ca, cb);
    for (const wave of [1, 2]) {
      await eventually(() => gate.parked === 6, `wave ${wave}: 6 handlers parked`);
      expect([ca.inFlight(), cb.inFlight()]).toEqual([3, 3]);
      expect(perBus).toEqual({ a: 3, b: 3 });
      gate.releaseAll();
      await eventually(() => done === wave * 6, `wave ${wave} done`);
    }
    expect(max).toBe(6);
  });
});

describe('consume: outcomes', () => {
  it('dead-letters a rejected message with its reason and headers, terminates it, and keeps consuming', async () => {
    const stream = a.subjects.streams.requests;
    const subject = a.subjects.requests(randomId('env'));
    const durable = randomId('reject');
    const seen: string[] = [];
    const c = await a.consume({
      stream: 'requests',
      durable,
      filterSubject: subject,
      slots: 2,
      handler: (m) => {
        seen.push(decode(m.data));
        return decode(m.data) === 'bad' ? outcome.reject('bad payload: no action') : undefined;
      },
    });
    running.push(c);
    const terms = watchTerminations(a, stream, durable);
    try {
      const pub = await a.publish(subject, text('bad'), {
        msgId: 'request-1',
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
        headers: { 'Stageline-Requester': 'tool' },
      });
      const dead = await eventually(() => deadLetter(a, subject).then((m) => m ?? undefined), 'dead letter');
      expect(decode(dead.data)).toBe('bad');
      expect(dead.header.get(HEADERS.dlqReason)).toBe('bad payload: no action');
      expect(dead.header.get(HEADERS.dlqSubject)).toBe(subject);
      expect(dead.header.get(HEADERS.dlqStream)).toBe(stream);
      expect(dead.header.get(HEADERS.dlqStreamSeq)).toBe(String(pub.seq));
      expect(dead.header.get(HEADERS.dlqDeliveryCount)).toBe('1');
      expect(dead.header.get(HEADERS.dlqMsgId)).toBe('request-1');
      expect(dead.header.get('traceparent')).toBe('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
      expect(dead.header.get('Stageline-Requester')).toBe('tool');
      await eventually(() => terms.count() === 1, 'term advisory');

      await a.publish(subject, text('good'), { msgId: 'request-2' });
      await eventually(() => seen.includes('good'), 'the next message');
      await eventually(
        async () => (await consumerInfo(stream, durable)).num_ack_pending === 0,
        'nothing pending on the consumer',
      );
      const info = await consumerInfo(stream, durable);
      expect(info.num_redelivered).toBe(0);
      expect(seen.filter((s) => s === 'bad')).toHaveLength(1);
    } finally {
      terms.stop();
    }
  });

  it('dead-letters on a non-retryable DomainError, with the error as reason', async () => {
    const stream = a.subjects.streams.results;
    const subject = a.subjects.buildResults(randomId('dep'));
    const durable = randomId('domain');
    let calls = 0;
    const terms = watchTerminations(a, stream, durable);
    const c = await a.consume({
      stream: 'results',
      durable,
      filterSubject: subject,
      handler: () => {
        calls++;
        throw invalidArgument('service_ids', 'service svc-9 is not in the environment');
      },
    });
    running.push(c);
    try {
      await a.publish(subject, text('result'));
      const dead = await eventually(() => deadLetter(a, subject).then((m) => m ?? undefined), 'dead letter');
      expect(dead.header.get(HEADERS.dlqReason)).toBe(
        'INVALID_ARGUMENT: service_ids: service svc-9 is not in the environment',
      );
      await eventually(() => terms.count() === 1, 'term advisory');
      expect(calls).toBe(1);
      expect((await consumerInfo(stream, durable)).num_ack_pending).toBe(0);
    } finally {
      terms.stop();
    }
  });

  it('redelivers on { retry } with deliveryCount 2', async () => {
    const subject = a.subjects.environmentEvents(randomId('env'));
    const counts: number[] = [];
    const c = await a.consume({
      stream: 'events',
      durable: randomId('retry'),
      filterSubject: subject,
      handler: (m) => {
        counts.push(m.deliveryCount);
        return m.deliveryCount === 1 ? outcome.retry(50) : outcome.ack();
      },
    });
    running.push(c);
    await a.publish(subject, text('event'), { msgId: 'evt-1' });
    await eventually(() => counts.length === 2, 'redelivery');
    expect(counts).toEqual([1, 2]);
  });

  it('keeps retry delays short when the consumer has a server-side backoff', async () => {
    // With backoff [20 s, 60 s] an uncorrected nak(50 ms) at delivery 2 comes back after ~40 s, past the deadline.
    const subject = a.subjects.runEvents(randomId('env'), randomId('dep'));
    const counts: number[] = [];
    const c = await a.consume({
      stream: 'events',
      durable: randomId('backoff'),
      filterSubject: subject,
      backoffMs: [20_000, 60_000],
      handler: (m) => {
        counts.push(m.deliveryCount);
        return m.deliveryCount < 3 ? outcome.retry(50) : undefined;
      },
    });
    running.push(c);
    await a.publish(subject, text('event'));
    await eventually(() => counts.length === 3, 'third delivery', 10_000);
    expect(counts).toEqual([1, 2, 3]);
  });

  it('redelivers on a retryable DomainError', async () => {
    const subject = a.subjects.deployResults(randomId('dep'));
    const seen: BusMessage[] = [];
    const c = await a.consume({
      stream: 'results',
      durable: randomId('unavailable'),
      filterSubject: subject,
      retryDelay: fast,
      handler: (m) => {
        seen.push(m);
        if (m.deliveryCount === 1) throw new DomainError('UNAVAILABLE', 'registry down');
      },
    });
    running.push(c);
    await a.publish(subject, text('r'), { msgId: 'res-1', traceparent: '00-aa-bb-01' });
    await eventually(() => seen.length === 2, 'redelivery');
    expect(seen.map((m) => m.deliveryCount)).toEqual([1, 2]);
    expect(seen.map((m) => m.msgId)).toEqual(['res-1', 'res-1']);
    expect(seen[0]?.traceparent).toBe('00-aa-bb-01');
  });

  it('keeps the others flowing past a handler that throws, and dead-letters it at max_deliver', async () => {
    const stream = a.subjects.streams.buildJobs;
    const subject = a.subjects.buildJobs(randomId('dep'));
    const durable = randomId('poison');
    const poisonDeliveries: number[] = [];
    const good = new Set<string>();
    const c = await a.consume({
      stream: 'buildJobs',
      durable,
      filterSubject: subject,
      slots: 2,
      maxDeliver: 3,
      retryDelay: fast,
      handler: (m) => {
        const body = decode(m.data);
        if (body === 'poison') {
          poisonDeliveries.push(m.deliveryCount);
          throw new Error('cannot parse job');
        }
        good.add(body);
      },
    });
    running.push(c);
    await publishMany(subject, ['poison', 'a', 'b', 'c', 'd', 'e']);
    await eventually(() => good.size === 5, 'all good messages');
    const dead = await eventually(() => deadLetter(a, subject).then((m) => m ?? undefined), 'dead letter');
    expect(decode(dead.data)).toBe('poison');
    expect(dead.header.get(HEADERS.dlqReason)).toBe('gave up after 3 deliveries; last: Error: cannot parse job');
    expect(dead.header.get(HEADERS.dlqDeliveryCount)).toBe('3');
    expect(poisonDeliveries).toEqual([1, 2, 3]);
    await eventually(
      async () => (await storedOn('buildJobs', subject)) === 0,
      'work queue empty (the poison message terminated)',
    );
    expect((await consumerInfo(stream, durable)).num_ack_pending).toBe(0);
  });

  it('extends ack_wait while the handler calls working()', async () => {
    const subject = a.subjects.buildJobs(randomId('dep'));
    const deliveries: number[] = [];
    const c = await a.consume({
      stream: 'buildJobs',
      durable: randomId('working'),
      filterSubject: subject,
      slots: 2,
      ackWaitMs: 1_000,
      handler: async (m) => {
        deliveries.push(m.deliveryCount);
        // Three ack_waits long: without working() the server would redeliver to the free slot.
        for (let i = 0; i < 10; i++) {
          await new Promise((r) => setTimeout(r, 300));
          m.working();
        }
      },
    });
    running.push(c);
    await a.publish(subject, text('long build'));
    await eventually(async () => (await storedOn('buildJobs', subject)) === 0, 'job acknowledged');
    expect(deliveries).toEqual([1]);
  });

  it('recreates its consumer when it is deleted under it, and carries on', async () => {
    const subject = a.subjects.deployResults(randomId('dep'));
    const durable = randomId('recreate');
    const seen: string[] = [];
    const c = await a.consume({
      stream: 'results',
      durable,
      filterSubject: subject,
      pullExpiresMs: 1_000,
      handler: (m) => {
        seen.push(decode(m.data));
      },
    });
    running.push(c);
    await a.publish(subject, text('before'));
    await eventually(() => seen.includes('before'), 'first message');
    await a.jsm.consumers.delete(a.subjects.streams.results, c.consumer);
    await a.publish(subject, text('after'));
    await eventually(() => seen.includes('after'), 'message after the consumer was recreated');
    expect((await consumerInfo(a.subjects.streams.results, durable)).config.filter_subject).toBe(subject);
  });

  it('stop() stops pulling and waits for handlers in flight', async () => {
    const subject = a.subjects.deployJobs(randomId('dep'));
    const gate = newGate();
    const order: string[] = [];
    let handled = 0;
    const c = await a.consume({
      stream: 'deployJobs',
      durable: randomId('stop'),
      filterSubject: subject,
      slots: 1,
      handler: async () => {
        handled++;
        await gate.pass();
        order.push('handler finished');
      },
    });
    await publishMany(subject, ['one', 'two']);
    await eventually(() => gate.parked === 1, 'first handler parked');
    const stopped = c.stop().then(() => order.push('stopped'));
    gate.releaseAll();
    await stopped;
    expect(order).toEqual(['handler finished', 'stopped']);
    expect(handled).toBe(1);
    expect(c.inFlight()).toBe(0);
    // The second job was never taken: still in the work queue, nothing pending on the consumer.
    expect(await storedOn('deployJobs', subject)).toBe(1);
  });
});
