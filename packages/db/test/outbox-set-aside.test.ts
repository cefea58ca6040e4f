// The relay never wedges: a row the bus refuses for a reason of its own (here over NATS's max_payload, as
// a 1.31 MB service event once was) is set aside with the reason after a few tries, and the rows after it
// are published, in order, on a real JetStream. A bus that is away sets nothing aside.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Bus } from '@stageline/bus';
import { DomainError } from '@stageline/errors';
import { scrape } from '@stageline/telemetry';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import {
  type Database,
  enqueue,
  listSetAside,
  OutboxMessage,
  type OutboxPublish,
  OutboxRelay,
  openDatabase,
  outboxMigration,
  outboxSetAsideMigration,
} from '../src/index.ts';
import { DATABASE_URL, dropSchema, randomName, silentLog } from './helpers.ts';

const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const run = promisify(execFile);
const listing = fileURLToPath(new URL('../../../deploy/dev/outbox.ts', import.meta.url));
const schemas: string[] = [];
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(async () => {
  for (const s of schemas) await dropSchema(s);
});

async function open(): Promise<Database> {
  const schema = randomName('t');
  schemas.push(schema);
  const db = await openDatabase({
    url: DATABASE_URL,
    schema,
    entities: [OutboxMessage],
    migrations: [outboxMigration, outboxSetAsideMigration],
    log: silentLog,
    poolMax: 4,
  });
  cleanups.push(() => db.close());
  return db;
}

async function enqueueOne(db: Database, subject: string, payload: Uint8Array): Promise<string> {
  let id = '';
  await db.em().transactional(async (em) => {
    id = enqueue(em, { subject, payload });
  });
  return id;
}

describe('the outbox relay on a real JetStream', () => {
  it('sets aside a row over max_payload with its reason, and the next event is published', async () => {
    const db = await open();
    const prefix = randomName('t');
    const bus = await Bus.connect({ url: NATS_URL, prefix, name: 'outbox-set-aside', log: silentLog });
    cleanups.push(async () => {
      for (const name of Object.values(bus.subjects.streams)) await bus.jsm.streams.delete(name).catch(() => false);
      await bus.close();
    });
    await bus.ensureStreams();
    const subject = bus.subjects.runEvents('env-1', 'run-1');
    const before = await enqueueOne(db, subject, new TextEncoder().encode('before'));
    // Over the server's max_payload (1 MiB by default): the client refuses it, every time.
    const tooBig = await enqueueOne(db, subject, randomBytes(1_310_000));
    const after = await enqueueOne(db, subject, new TextEncoder().encode('after'));

    const relay = new OutboxRelay({
      db,
      publish: (s, data, opts) => bus.publish(s, data, opts),
      log: silentLog,
      pollIntervalMs: 20,
      maxBackoffMs: 50,
    });
    cleanups.push(() => relay.stop());
    relay.start();
    // Before it runs dry, the scrape sees a backlog of this schema's outbox.
    const scraped = (await scrape()).body;
    expect(scraped).toMatch(new RegExp(`stageline_outbox_pending_rows\\{schema="${db.schema}"\\} \\d`));
    await vi.waitFor(async () => expect(await db.em().count(OutboxMessage, { publishedAt: null })).toBe(0), {
      timeout: 15_000,
      interval: 50,
    });
    expect((await scrape()).body).toContain(`stageline_outbox_set_aside_rows_total{schema="${db.schema}"} 1`);
    expect((await scrape()).body).toContain(`stageline_outbox_pending_rows{schema="${db.schema}"} 0`);
    await relay.stop();

    // The stream holds the two events, in order; the big one is not there.
    const stream = bus.subjects.streams.events;
    const info = await bus.jsm.streams.info(stream);
    expect(info.state.messages).toBe(2);
    const jsm = bus.jsm;
    const first = await jsm.streams.getMessage(stream, { seq: info.state.first_seq });
    const second = await jsm.streams.getMessage(stream, { seq: info.state.first_seq + 1 });
    expect([first?.header.get('Nats-Msg-Id'), second?.header.get('Nats-Msg-Id')]).toEqual([before, after]);
    expect(second?.string()).toBe('after');

    // Set aside, with why, and visible to an operator.
    const setAside = await listSetAside(db);
    expect(setAside.map((r) => [r.id, r.subject, r.bytes, r.attempts])).toEqual([[tooBig, subject, 1_310_000, 3]]);
    expect(setAside[0]?.reason).toMatch(/max_payload/);
    expect(relay.setAsideCount).toBe(1);
    expect(await db.em().count(OutboxMessage, { id: tooBig })).toBe(0);
    // The operator's listing names it, with why.
    const { stdout } = await run(process.execPath, [listing, 'list'], { env: { ...process.env, DATABASE_URL } });
    const line = stdout.split('\n').find((l) => l.includes(tooBig));
    expect(line).toContain(`${db.schema}\t${tooBig}\t${subject}\t1310000 bytes\t3 tries`);
    expect(line).toMatch(/max_payload/);
  });

  it('pipelined: an ack lost mid-window republishes from that row; the stream holds every row once, in order', async () => {
    const db = await open();
    const prefix = randomName('t');
    const bus = await Bus.connect({ url: NATS_URL, prefix, name: 'outbox-window', log: silentLog });
    cleanups.push(async () => {
      for (const name of Object.values(bus.subjects.streams)) await bus.jsm.streams.delete(name).catch(() => false);
      await bus.close();
    });
    await bus.ensureStreams();
    const subject = bus.subjects.runEvents('env-1', 'run-1');
    const ids: string[] = [];
    await db.em().transactional(async (em) => {
      for (let i = 0; i < 30; i++) ids.push(enqueue(em, { subject, payload: new TextEncoder().encode(`e${i}`) }));
    });
    let lost = false;
    const relay = new OutboxRelay({
      db,
      publish: async (s, data, opts) => {
        const ack = await bus.publish(s, data, opts);
        // The 11th row reaches the stream but its ack is lost, once (as a timeout would say).
        if (opts.msgId === ids[10] && !lost) {
          lost = true;
          throw new DomainError('UNAVAILABLE', 'publishing failed: TIMEOUT', { retryable: true });
        }
        return ack;
      },
      log: silentLog,
      window: 8,
    });
    cleanups.push(() => relay.stop());
    await expect(relay.flush()).rejects.toThrow('TIMEOUT');
    await relay.flush();
    const stream = bus.subjects.streams.events;
    const info = await bus.jsm.streams.info(stream);
    const texts: string[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await bus.jsm.streams.getMessage(stream, { seq });
      if (m?.subject === subject) texts.push(new TextDecoder().decode(m.data));
    }
    expect(texts).toEqual(ids.map((_, i) => `e${i}`));
  });

  it('sets nothing aside while the bus is away: the rows wait, in order, and go once it answers', async () => {
    const db = await open();
    const ids = [
      await enqueueOne(db, 'stageline.events.x', new Uint8Array([1])),
      await enqueueOne(db, 'stageline.events.x', new Uint8Array([2])),
    ];
    let away = true;
    const delivered: string[] = [];
    let tries = 0;
    const publish: OutboxPublish = async (_s, _d, { msgId }) => {
      if (away) {
        tries++;
        throw new DomainError('UNAVAILABLE', 'publishing failed: TIMEOUT', { retryable: true });
      }
      delivered.push(msgId);
    };
    const relay = new OutboxRelay({ db, publish, log: silentLog, pollIntervalMs: 10, maxBackoffMs: 20 });
    cleanups.push(() => relay.stop());
    relay.start();
    // Many more tries than maxAttempts: still nothing set aside.
    await vi.waitFor(() => expect(tries).toBeGreaterThan(10), { timeout: 10_000, interval: 20 });
    away = false;
    await vi.waitFor(() => expect(delivered).toEqual(ids), { timeout: 10_000, interval: 20 });
    await relay.stop();
    expect(await listSetAside(db)).toEqual([]);
    expect(relay.setAsideCount).toBe(0);
  });
});
