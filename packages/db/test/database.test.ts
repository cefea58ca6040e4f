import { afterAll, describe, expect, it } from 'vitest';
import { type DbMigration, isUniqueViolation, LockMode, MIGRATIONS_TABLE, newId, openDatabase } from '../src/index.ts';
import {
  DATABASE_URL,
  dropSchema,
  randomName,
  silentLog,
  Thing,
  thingMigration,
  urlFor,
  withClient,
} from './helpers.ts';

const schemas: string[] = [];
function newSchema(): string {
  const s = randomName('t');
  schemas.push(s);
  return s;
}

afterAll(async () => {
  for (const s of schemas) {
    await dropSchema(s);
  }
});

/** A migration that counts its own runs in a table, slowly, so overlapping runs would collide. */
const countedMigrations: DbMigration[] = [
  {
    name: '0001-runs',
    async up(sql) {
      await sql.execute('create table runs (n serial primary key, at timestamptz not null default now())');
      await sql.execute('select pg_sleep(0.2)');
      await sql.execute('insert into runs default values');
    },
  },
  {
    name: '0002-more',
    async up(sql) {
      await sql.execute('insert into runs default values');
    },
  },
];

async function runCount(schema: string): Promise<number> {
  return withClient(async (c) => Number((await c.query(`select count(*) as n from "${schema}".runs`)).rows[0].n));
}

async function appliedNames(schema: string): Promise<string[]> {
  return withClient(async (c) =>
    (await c.query(`select name from "${schema}".${MIGRATIONS_TABLE} order by id`)).rows.map((r) => r.name as string),
  );
}

describe('openDatabase', () => {
  it('creates the database named in the URL when it is missing, even with two starting at once', async () => {
    const dbName = randomName('stageline_dbtest');
    const url = urlFor(dbName);
    try {
      const [a, b] = await Promise.all([
        openDatabase({ url, schema: 'svc', entities: [Thing], migrations: [thingMigration], log: silentLog }),
        openDatabase({ url, schema: 'svc', entities: [Thing], migrations: [thingMigration], log: silentLog }),
      ]);
      expect([...a.appliedMigrations, ...b.appliedMigrations]).toEqual(['0001-thing']);
      const found = await withClient((c) => c.query('select 1 from pg_database where datname = $1', [dbName]));
      expect(found.rowCount).toBe(1);
      const em = a.em();
      em.create(Thing, { id: newId(), name: 'x', count: 1, tags: [], createdAt: new Date(), note: null });
      await em.flush();
      expect(await b.em().count(Thing, {})).toBe(1);
      await a.close();
      await b.close();
    } finally {
      await withClient((c) => c.query(`drop database if exists "${dbName}" with (force)`));
    }
  });

  it('creates the schema, keeps the migrations table in it and applies migrations once', async () => {
    const schema = newSchema();
    const first = await openDatabase({
      url: DATABASE_URL,
      schema,
      entities: [Thing],
      migrations: countedMigrations,
      log: silentLog,
    });
    expect(first.appliedMigrations).toEqual(['0001-runs', '0002-more']);
    await first.close();

    const second = await openDatabase({
      url: DATABASE_URL,
      schema,
      entities: [Thing],
      migrations: countedMigrations,
      log: silentLog,
    });
    expect(second.appliedMigrations).toEqual([]);
    await second.close();

    expect(await runCount(schema)).toBe(2);
    expect(await appliedNames(schema)).toEqual(['0001-runs', '0002-more']);
    const tables = await withClient(async (c) =>
      (
        await c.query('select table_name from information_schema.tables where table_schema = $1 order by 1', [schema])
      ).rows.map((r) => r.table_name),
    );
    expect(tables).toEqual([MIGRATIONS_TABLE, 'runs']);
  });

  it('applies a migration added later, and only that one', async () => {
    const schema = newSchema();
    const db1 = await openDatabase({
      url: DATABASE_URL,
      schema,
      entities: [Thing],
      migrations: [countedMigrations[0]!],
      log: silentLog,
    });
    await db1.close();
    const db2 = await openDatabase({
      url: DATABASE_URL,
      schema,
      entities: [Thing],
      migrations: countedMigrations,
      log: silentLog,
    });
    expect(db2.appliedMigrations).toEqual(['0002-more']);
    await db2.close();
    expect(await runCount(schema)).toBe(2);
  });

  it('lets only one of several processes starting at once apply the migrations', async () => {
    const schema = newSchema();
    const dbs = await Promise.all(
      Array.from({ length: 4 }, () =>
        openDatabase({
          url: DATABASE_URL,
          schema,
          entities: [Thing],
          migrations: countedMigrations,
          log: silentLog,
          poolMax: 2,
        }),
      ),
    );
    const applied = dbs.flatMap((d) => d.appliedMigrations);
    expect(applied.sort()).toEqual(['0001-runs', '0002-more']);
    expect(dbs.filter((d) => d.appliedMigrations.length > 0)).toHaveLength(1);
    await Promise.all(dbs.map((d) => d.close()));
    expect(await runCount(schema)).toBe(2);
    expect(await appliedNames(schema)).toEqual(['0001-runs', '0002-more']);
  });

  it('rolls a failed migration batch back and reports it', async () => {
    const schema = newSchema();
    const broken: DbMigration = {
      name: '0002-broken',
      async up(sql) {
        await sql.execute('insert into runs default values');
        await sql.execute('select * from no_such_table');
      },
    };
    await expect(
      openDatabase({
        url: DATABASE_URL,
        schema,
        entities: [Thing],
        migrations: [countedMigrations[0]!, broken],
        log: silentLog,
      }),
    ).rejects.toThrow(/no_such_table/);
    const db = await openDatabase({
      url: DATABASE_URL,
      schema,
      entities: [Thing],
      migrations: countedMigrations,
      log: silentLog,
    });
    // all or nothing: the first migration was rolled back with the broken one, so both apply now
    expect(db.appliedMigrations).toEqual(['0001-runs', '0002-more']);
    await db.close();
    expect(await runCount(schema)).toBe(2);
  });

  it('refuses a schema name that is not a plain identifier', async () => {
    await expect(
      openDatabase({ url: DATABASE_URL, schema: 'Bad-Name"; drop', entities: [Thing], migrations: [], log: silentLog }),
    ).rejects.toThrow(/invalid schema name/);
  });
});

describe('entities', () => {
  it('round-trips a defineEntity class in the service schema, one fork per unit of work', async () => {
    const schema = newSchema();
    const db = await openDatabase({
      url: DATABASE_URL,
      schema,
      entities: [Thing],
      migrations: [thingMigration],
      log: silentLog,
    });
    try {
      const id = newId();
      const createdAt = new Date('2026-01-02T03:04:05.678Z');
      const em1 = db.em();
      const thing = em1.create(Thing, { id, name: 'alpha', count: 3, tags: ['a', 'b'], createdAt, note: null });
      expect(thing).toBeInstanceOf(Thing);
      await em1.flush();

      const em2 = db.em();
      expect(em2).not.toBe(em1);
      const loaded = await em2.findOneOrFail(Thing, { id });
      expect(loaded).not.toBe(thing); // a different identity map
      expect(loaded).toBeInstanceOf(Thing);
      expect(loaded.label()).toBe('alpha#3');
      expect({ ...loaded }).toEqual({ id, name: 'alpha', count: 3, tags: ['a', 'b'], createdAt, note: null });

      loaded.count = 4;
      await em2.flush();
      expect((await db.em().findOneOrFail(Thing, { id })).count).toBe(4);

      // the table is the one in the service's schema
      const rows = await withClient((c) => c.query(`select name, count from "${schema}".thing where id = $1`, [id]));
      expect(rows.rows).toEqual([{ name: 'alpha', count: 4 }]);
    } finally {
      await db.close();
    }
  });

  it('maps a duplicate key to isUniqueViolation with the constraint name', async () => {
    const schema = newSchema();
    const db = await openDatabase({
      url: DATABASE_URL,
      schema,
      entities: [Thing],
      migrations: [thingMigration],
      log: silentLog,
    });
    try {
      const em = db.em();
      em.create(Thing, { id: newId(), name: 'dup', count: 1, tags: [], createdAt: new Date(), note: null });
      await em.flush();
      const em2 = db.em();
      em2.create(Thing, { id: newId(), name: 'dup', count: 2, tags: [], createdAt: new Date(), note: null });
      const error = await em2.flush().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeDefined();
      expect(isUniqueViolation(error)).toBe(true);
      expect(isUniqueViolation(error, 'thing_name_key')).toBe(true);
      expect(isUniqueViolation(error, 'thing_pkey')).toBe(false);
    } finally {
      await db.close();
    }
  });

  it('serializes read-modify-write with a pessimistic row lock', async () => {
    const schema = newSchema();
    const db = await openDatabase({
      url: DATABASE_URL,
      schema,
      entities: [Thing],
      migrations: [thingMigration],
      log: silentLog,
    });
    try {
      const id = newId();
      const em = db.em();
      em.create(Thing, { id, name: 'counter', count: 0, tags: [], createdAt: new Date(), note: null });
      await em.flush();
      const increment = () =>
        db.em().transactional(async (tx) => {
          const t = await tx.findOneOrFail(Thing, { id }, { lockMode: LockMode.PESSIMISTIC_WRITE });
          // hold the row a moment: without the lock both transactions would read the same count
          await tx.execute('select pg_sleep(0.1)');
          t.count += 1;
        });
      await Promise.all([increment(), increment(), increment()]);
      expect((await db.em().findOneOrFail(Thing, { id })).count).toBe(3);
    } finally {
      await db.close();
    }
  });

  it('rolls back em.transactional on error', async () => {
    const schema = newSchema();
    const db = await openDatabase({
      url: DATABASE_URL,
      schema,
      entities: [Thing],
      migrations: [thingMigration],
      log: silentLog,
    });
    try {
      await expect(
        db.em().transactional(async (em) => {
          em.create(Thing, { id: newId(), name: 'gone', count: 1, tags: [], createdAt: new Date(), note: null });
          await em.flush();
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      expect(await db.em().count(Thing, {})).toBe(0);
    } finally {
      await db.close();
    }
  });
});
