// The database retry policy against a PostgreSQL of the test's own, stopped and started mid-work
// (never the machine's shared server).
import { DomainError } from '@stageline/errors';
import { type FaultServer, startOwnPostgres } from '@stageline/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Database, isTransientDbError, newId, openDatabase } from '../src/index.ts';
import { silentLog, Thing, thingMigration } from './helpers.ts';

describe('isTransientDbError', () => {
  it.each([
    ['a refused connection', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })],
    ['a reset connection', Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })],
    ['the server shutting down', Object.assign(new Error('terminating connection'), { code: '57P01' })],
    ['the server starting', Object.assign(new Error('the database system is starting up'), { code: '57P03' })],
    ['a connection exception', Object.assign(new Error('connection failure'), { code: '08006' })],
    ['a serialization failure', Object.assign(new Error('could not serialize'), { code: '40001' })],
    ['a connection lost mid-query', new Error('Connection terminated unexpectedly')],
    ['a wrapped one', new Error('query failed', { cause: new Error('Connection terminated unexpectedly') })],
  ])('retries %s', (_, error) => {
    expect(isTransientDbError(error)).toBe(true);
  });

  it.each([
    ['a unique violation', Object.assign(new Error('duplicate key'), { code: '23505' })],
    ['a syntax error', Object.assign(new Error('syntax error'), { code: '42601' })],
    ['a plain bug', new TypeError('x is undefined')],
    ['nothing', undefined],
  ])('does not retry %s', (_, error) => {
    expect(isTransientDbError(error)).toBe(false);
  });
});

describe('Database.retry against a restarted PostgreSQL', () => {
  let server: FaultServer;
  let db: Database;

  beforeAll(async () => {
    server = await startOwnPostgres();
    db = await openDatabase({
      url: server.url.replace(/\/postgres$/, '/faults'),
      schema: 'faults',
      entities: [Thing],
      migrations: [thingMigration],
      log: silentLog,
      // One connection: a connection the pool lost for good would hang everything after it.
      poolMax: 1,
    });
  });
  afterAll(async () => {
    await db?.close();
    await server?.destroy();
  });

  const insertThing = (em: Parameters<Parameters<Database['retry']>[1]>[0]) =>
    em.transactional(async (tx) => {
      const name = `thing-${newId()}`;
      tx.create(Thing, { id: newId(), name, count: 1, tags: [], createdAt: new Date(), note: null });
      return name;
    });

  it('without a retry, work fails while the server is down', async () => {
    await server.stop();
    try {
      const error = await db
        .em()
        .count(Thing)
        .catch((e: unknown) => e);
      expect(isTransientDbError(error)).toBe(true);
    } finally {
      await server.start();
    }
  });

  it('finishes work begun while the server is down, once it is back', async () => {
    await server.stop();
    const work = db.retry('inserting a thing', insertThing);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    await server.start();
    const name = await work;
    expect(await db.em().count(Thing, { name })).toBe(1);
  });

  it('runs a transaction again when the connection is lost in the middle of it', async () => {
    let attempts = 0;
    const work = db.retry('a slow transaction', (em) =>
      em.transactional(async (tx) => {
        attempts++;
        if (attempts === 1) await tx.execute('select pg_sleep(30)');
        return tx.count(Thing);
      }),
    );
    // The first attempt is inside pg_sleep when the server goes: "Connection terminated unexpectedly".
    await new Promise((resolve) => setTimeout(resolve, 500));
    await server.stop();
    await server.start();
    expect(await work).toBeGreaterThanOrEqual(0);
    expect(attempts).toBeGreaterThanOrEqual(2);
    // The broken connection went back to the pool (pool-guard.ts): the only slot is free again.
    const next = await Promise.race([
      db.em().count(Thing),
      new Promise((resolve) => setTimeout(() => resolve('the pool never got its connection back'), 15_000)),
    ]);
    expect(typeof next).toBe('number');
  });

  it('gives up past its deadline with UNAVAILABLE naming the work and the fault', async () => {
    const short = await openDatabase({
      url: server.url.replace(/\/postgres$/, '/faults'),
      schema: 'faults',
      entities: [Thing],
      migrations: [thingMigration],
      log: silentLog,
      poolMax: 1,
      retry: { deadlineMs: 1_000 },
    });
    await server.stop();
    try {
      const error = await short.retry('counting things', (em) => em.count(Thing)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DomainError);
      expect((error as DomainError).code).toBe('UNAVAILABLE');
      expect((error as DomainError).retryable).toBe(true);
      expect((error as DomainError).message).toMatch(/faults: counting things: still failing after \d+ attempts/);
    } finally {
      await server.start();
      await short.close();
    }
  });

  it('throws a non-transient error at once', async () => {
    let attempts = 0;
    const error = await db
      .retry('a bad query', async (em) => {
        attempts++;
        return em.execute('select * from no_such_table');
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect(attempts).toBe(1);
  });
});
