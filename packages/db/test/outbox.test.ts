import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import {
  type Database,
  enqueue,
  insertOutbox,
  newId,
  OutboxMessage,
  type OutboxPublish,
  OutboxRelay,
  openDatabase,
  outboxMigration,
} from '../src/index.ts';
import { DATABASE_URL, dropSchema, randomName, silentLog, Thing, thingMigration } from './helpers.ts';

const schemas: string[] = [];
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) {
    await c();
  }
});
afterAll(async () => {
  for (const s of schemas) {
    await dropSchema(s);
  }
});

async function open(schema?: string): Promise<Database> {
  const s = schema ?? randomName('t');
  if (!schemas.includes(s)) {
    schemas.push(s);
  }
  const db = await openDatabase({
    url: DATABASE_URL,
    schema: s,
    entities: [Thing, OutboxMessage],
    migrations: [outboxMigration, thingMigration],
    log: silentLog,
    poolMax: 4,
  });
  cleanups.push(() => db.close());
  return db;
}

function relay(
  db: Database,
  publish: OutboxPublish,
  extra: { batchSize?: number; retentionMs?: number; window?: number } = {},
): OutboxRelay {
  const r = new OutboxRelay({ db, publish, log: silentLog, pollIntervalMs: 20, maxBackoffMs: 50, ...extra });
  cleanups.push(() => r.stop());
  return r;
}

interface Published {
  subject: string;
  data: Uint8Array;
  msgId: string;
  headers: Record<string, string>;
}

function recorder(): { calls: Published[]; publish: OutboxPublish } {
  const calls: Published[] = [];
  return {
    calls,
    publish: async (subject, data, opts) => {
      calls.push({ subject, data, msgId: opts.msgId, headers: opts.headers });
    },
  };
}

/** Enqueues `n` messages in `perTx`-sized transactions; returns their ids in commit order. */
async function enqueueMany(
  db: Database,
  n: number,
  perTx: number,
  subject = 'stageline.events.test',
): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i += perTx) {
    await db.em().transactional(async (em) => {
      for (let j = i; j < Math.min(n, i + perTx); j++) {
        ids.push(
          enqueue(em, {
            subject: `${subject}.${j % 3}`,
            payload: new TextEncoder().encode(`m${j}`),
            headers: { n: String(j) },
          }),
        );
      }
    });
  }
  return ids;
}

async function pendingCount(db: Database): Promise<number> {
  return db.em().count(OutboxMessage, { publishedAt: null });
}

describe('enqueue', () => {
  it('writes the event with the state change, in one transaction', async () => {
    const db = await open();
    let id = '';
    await db.em().transactional(async (em) => {
      em.create(Thing, { id: newId(), name: 'a', count: 1, tags: [], createdAt: new Date(), note: null });
      id = enqueue(em, {
        subject: 'stageline.events.x',
        payload: new Uint8Array([0, 1, 255]),
        headers: { trace: 't1' },
      });
    });
    const row = await db.em().findOneOrFail(OutboxMessage, { id });
    expect(row.subject).toBe('stageline.events.x');
    expect([...row.payload]).toEqual([0, 1, 255]);
    expect(row.headers).toEqual({ trace: 't1' });
    expect(row.publishedAt).toBeNull();
    expect(await db.em().count(Thing, {})).toBe(1);
  });

  it('takes a caller-chosen id (e.g. the event id inside the payload)', async () => {
    const db = await open();
    const eventId = newId();
    const em = db.em();
    expect(enqueue(em, { id: eventId, subject: 'stageline.events.y', payload: new Uint8Array([7]) })).toBe(eventId);
    await em.flush();
    const { calls, publish } = recorder();
    await relay(db, publish).flush();
    expect(calls.map((c) => [c.msgId, c.headers])).toEqual([[eventId, {}]]);
  });

  it('leaves nothing behind when the transaction rolls back', async () => {
    const db = await open();
    await expect(
      db.em().transactional(async (em) => {
        em.create(Thing, { id: newId(), name: 'a', count: 1, tags: [], createdAt: new Date(), note: null });
        enqueue(em, { subject: 'stageline.events.x', payload: new Uint8Array([1]) });
        await em.flush();
        throw new Error('state change refused');
      }),
    ).rejects.toThrow('state change refused');
    expect(await db.em().count(OutboxMessage, {})).toBe(0);
    expect(await db.em().count(Thing, {})).toBe(0);
  });
});

describe('insertOutbox', () => {
  it('writes a batch in one statement, in the given order, and the relay publishes it byte for byte', async () => {
    const db = await open();
    const payloads = [new Uint8Array([0, 1, 2, 255]), new TextEncoder().encode("it's ü"), new Uint8Array(0)];
    const ids = await db.em().transactional((em) =>
      insertOutbox(
        em,
        payloads.map((payload, n) => ({
          subject: `stageline.events.insert.${n}`,
          payload,
          ...(n === 1 ? { id: newId(), headers: { n: '1' } } : {}),
        })),
      ),
    );
    expect(ids).toHaveLength(3);
    expect(await pendingCount(db)).toBe(3);
    const { calls, publish } = recorder();
    const r = relay(db, publish);
    r.start();
    await vi.waitFor(() => expect(calls.length).toBe(3), { timeout: 10_000, interval: 20 });
    await r.stop();
    expect(calls.map((c) => c.msgId)).toEqual(ids);
    expect(calls.map((c) => [...c.data])).toEqual(payloads.map((p) => [...p]));
    expect(calls[1]?.headers).toEqual({ n: '1' });
    expect(calls.map((c) => c.subject)).toEqual([0, 1, 2].map((n) => `stageline.events.insert.${n}`));
    expect(await pendingCount(db)).toBe(0);
  });

  it('writes nothing when the transaction rolls back', async () => {
    const db = await open();
    await expect(
      db.em().transactional(async (em) => {
        await insertOutbox(em, [{ subject: 'stageline.events.x', payload: new Uint8Array([1]) }]);
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    expect(await pendingCount(db)).toBe(0);
  });
});

describe('OutboxRelay', () => {
  it('publishes every row once, in order, with its id as msgId, and marks it published', async () => {
    const db = await open();
    const ids = await enqueueMany(db, 230, 7);
    const { calls, publish } = recorder();
    const r = relay(db, publish, { batchSize: 50 });
    r.start();
    await vi.waitFor(() => expect(calls.length).toBeGreaterThanOrEqual(230), { timeout: 20_000, interval: 20 });
    await r.stop();
    expect(calls.map((c) => c.msgId)).toEqual(ids);
    calls.forEach((c, j) => {
      expect(c.subject).toBe(`stageline.events.test.${j % 3}`);
      expect(new TextDecoder().decode(c.data)).toBe(`m${j}`);
      expect(c.headers).toEqual({ n: String(j) });
    });
    expect(await pendingCount(db)).toBe(0);
  });

  it('wakes on kick() and keeps publishing what is enqueued while it runs', async () => {
    const db = await open();
    const { calls, publish } = recorder();
    // A long poll interval: only kick() makes it look again within the test's time.
    const r = new OutboxRelay({ db, publish, log: silentLog, pollIntervalMs: 60_000 });
    cleanups.push(() => r.stop());
    r.start();
    const ids: string[] = [];
    for (let round = 0; round < 5; round++) {
      ids.push(...(await enqueueMany(db, 3, 3)));
      r.kick();
      await vi.waitFor(() => expect(calls.length).toBe(ids.length), { timeout: 10_000, interval: 10 });
    }
    expect(calls.map((c) => c.msgId)).toEqual(ids);
  });

  it('flush() publishes everything pending now', async () => {
    const db = await open();
    const ids = await enqueueMany(db, 120, 40);
    const { calls, publish } = recorder();
    await relay(db, publish, { batchSize: 25 }).flush();
    expect(calls.map((c) => c.msgId)).toEqual(ids);
    expect(await pendingCount(db)).toBe(0);
  });

  it('retries a failing publish with backoff, without losing or reordering anything', async () => {
    const db = await open();
    const ids = await enqueueMany(db, 10, 10);
    const delivered: string[] = [];
    const attempts = new Map<string, number>();
    let failuresLeft = 2;
    let away = false;
    const publish: OutboxPublish = async (_subject, _data, { msgId }) => {
      attempts.set(msgId, (attempts.get(msgId) ?? 0) + 1);
      // The bus goes away at the 4th message, twice: it and the rows sent behind it in the same window
      // fail; the first three are committed; the next turn starts again from the 4th.
      if (msgId === ids[3]) {
        away = failuresLeft > 0;
        if (away) failuresLeft--;
      }
      if (away) throw new Error('nats: timeout');
      delivered.push(msgId);
    };
    const r = relay(db, publish, { batchSize: 100 });
    r.start();
    await vi.waitFor(() => expect(delivered.length).toBe(10), { timeout: 10_000, interval: 20 });
    await r.stop();
    expect(delivered).toEqual(ids);
    expect(attempts.get(ids[3]!)).toBe(3);
    // rows before the failure were marked published in the failing turn, so none was sent twice
    expect(ids.slice(0, 3).every((id) => attempts.get(id) === 1)).toBe(true);
    expect(await pendingCount(db)).toBe(0);
  });

  it('publishes a window of rows at once, and after a failure mid-window starts again from the failed row', async () => {
    const db = await open();
    const ids = await enqueueMany(db, 40, 40);
    // A stream with a duplicate window: a repeated msgId is dropped.
    const stored: string[] = [];
    const sent: string[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    let failNext = true;
    const publish: OutboxPublish = async (_subject, _data, { msgId }) => {
      sent.push(msgId);
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((resolve) => setTimeout(resolve, 5));
      inFlight--;
      // The connection breaks at row 20: it and every row written behind it are lost, once.
      if (msgId === ids[20] && failNext) {
        failNext = false;
        throw new Error('nats: connection disconnected');
      }
      if (sent.lastIndexOf(ids[20]!) === sent.indexOf(ids[20]!) && ids.indexOf(msgId) > 20) {
        throw new Error('nats: connection disconnected');
      }
      if (!stored.includes(msgId)) stored.push(msgId);
    };
    const r = relay(db, publish, { batchSize: 100, window: 8 });
    await r.flush().catch(() => undefined); // the first turn fails at row 20
    await r.flush();
    expect(stored).toEqual(ids);
    expect(maxInFlight).toBe(8);
    // Rows 0–19 were published once; the second turn began at row 20.
    expect(ids.slice(0, 20).every((id) => sent.filter((s) => s === id).length === 1)).toBe(true);
    expect(sent.filter((s) => s === ids[20]).length).toBe(2);
    expect(await pendingCount(db)).toBe(0);
  });

  it('flush() reports a failing publish', async () => {
    const db = await open();
    await enqueueMany(db, 2, 2);
    const r = relay(db, async () => {
      throw new Error('nats: no responders');
    });
    await expect(r.flush()).rejects.toThrow('no responders');
    expect(await pendingCount(db)).toBe(2);
  });

  it('with two relays (two processes) on one schema, never publishes a row twice or two at once', async () => {
    const schema = randomName('t');
    const dbA = await open(schema);
    const dbB = await open(schema);
    const seen = new Map<string, number>();
    const order: string[] = [];
    // Publishes in flight by relay: a relay has several at once (its window), never both relays.
    const inFlight = { A: 0, B: 0 };
    let both = 0;
    const publisher =
      (me: 'A' | 'B'): OutboxPublish =>
      async (_s, _d, { msgId }) => {
        inFlight[me]++;
        if (inFlight.A > 0 && inFlight.B > 0) both++;
        // yield to the event loop so the other relay's turn can interleave if the lock did not hold it off
        await new Promise((resolve) => setTimeout(resolve, 1));
        seen.set(msgId, (seen.get(msgId) ?? 0) + 1);
        order.push(msgId);
        inFlight[me]--;
      };
    const rA = relay(dbA, publisher('A'), { batchSize: 10 });
    const rB = relay(dbB, publisher('B'), { batchSize: 10 });
    rA.start();
    rB.start();
    // enqueue from both "processes" while both relays run
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const db = i % 2 === 0 ? dbA : dbB;
      ids.push(...(await enqueueMany(db, 8, 8)));
      (i % 2 === 0 ? rA : rB).kick();
    }
    await vi.waitFor(() => expect(seen.size).toBe(ids.length), { timeout: 30_000, interval: 20 });
    await Promise.all([rA.stop(), rB.stop()]);
    const duplicates = [...seen.values()].filter((n) => n > 1).length;
    expect(duplicates).toBe(0);
    expect(both).toBe(0);
    // transactions were committed one after another, so the publish order is the enqueue order
    expect(order).toEqual(ids);
    expect(await pendingCount(dbA)).toBe(0);
  });

  it('deletes published rows older than the retention', async () => {
    const db = await open();
    await enqueueMany(db, 5, 5);
    const { publish } = recorder();
    await relay(db, publish).flush();
    // age three of them past the retention; the others stay
    const rows = await db.em().find(OutboxMessage, {}, { orderBy: { createdAt: 'asc' } });
    const old = rows.slice(0, 3).map((r) => r.id);
    await db
      .em()
      .nativeUpdate(OutboxMessage, { id: { $in: old } }, { publishedAt: new Date(Date.now() - 2 * 24 * 3600 * 1000) });
    const r = relay(db, publish);
    r.start();
    await vi.waitFor(async () => expect(await db.em().count(OutboxMessage, {})).toBe(2), {
      timeout: 10_000,
      interval: 20,
    });
    await r.stop();
    const left = (await db.em().find(OutboxMessage, {})).map((m) => m.id).sort();
    expect(left).toEqual(
      rows
        .slice(3)
        .map((m) => m.id)
        .sort(),
    );
  });
});
