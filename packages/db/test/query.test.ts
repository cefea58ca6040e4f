import { metrics } from '@stageline/telemetry';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Database, newId, numberPlaceholders, openDatabase, query } from '../src/index.ts';
import { DATABASE_URL, dropSchema, randomName, silentLog, Thing, thingMigration } from './helpers.ts';

const schema = randomName('q');
let db: Database;

beforeAll(async () => {
  db = await openDatabase({
    url: DATABASE_URL,
    schema,
    entities: [Thing],
    migrations: [thingMigration],
    log: silentLog,
  });
});

afterAll(async () => {
  await db?.close();
  await dropSchema(schema);
});

describe('numberPlaceholders', () => {
  it('numbers each ? outside quotes and leaves quoted ones alone', () => {
    expect(numberPlaceholders(`select ? , '?' , "a?b", ?::jsonb where x = 'it''s ?' and y = ?`)).toBe(
      `select $1 , '?' , "a?b", $2::jsonb where x = 'it''s ?' and y = $3`,
    );
    expect(numberPlaceholders('select $1, $2')).toBe('select $1, $2');
  });

  it('numbers as many placeholders as the text has outside quotes, in order', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom('?', 'a', ' ', "'x?'", '"y?"', ','), { maxLength: 40 }), (parts) => {
        const text = parts.join('');
        const numbered = numberPlaceholders(text);
        const bare = parts.filter((p) => p === '?').length;
        expect([...numbered.matchAll(/\$(\d+)/g)].map((m) => Number(m[1]))).toEqual(
          Array.from({ length: bare }, (_, i) => i + 1),
        );
      }),
    );
  });
});

describe('query', () => {
  it('sends values as bind parameters: quotes, backslashes and JSON arrive exactly as given', async () => {
    const awkward = `it's a "quote" \\ and ? and $1 and ünïcødé`;
    const tags = ['a', "b'c", 'd"e', '\\'];
    const id = newId();
    const em = db.em();
    await query(em, 'insert into thing (id, name, count, tags, created_at, note) values (?, ?, ?, ?::jsonb, ?, ?)', [
      id,
      awkward,
      3,
      JSON.stringify(tags),
      new Date('2026-01-02T03:04:05.678Z'),
      null,
    ]);
    const rows = await query<{ name: string; count: number; tags: string[]; created_at: string; note: null }>(
      em,
      'select name, count, tags, created_at, note from thing where id = ?',
      [id],
    );
    // Timestamps come back as PostgreSQL's text (MikroORM's type parsers, as with em.execute).
    expect(rows.map((r) => ({ ...r, created_at: new Date(r.created_at) }))).toEqual([
      { name: awkward, count: 3, tags, created_at: new Date('2026-01-02T03:04:05.678Z'), note: null },
    ]);
    // The ORM reads what was written.
    expect((await db.em().findOneOrFail(Thing, { id })).name).toBe(awkward);
  });

  it("runs inside the EntityManager's transaction: a rollback takes its writes back", async () => {
    const id = newId();
    await expect(
      db.em().transactional(async (tx) => {
        await query(tx, 'insert into thing (id, name, count, tags, created_at) values (?, ?, 1, ?::jsonb, now())', [
          id,
          `tx-${id}`,
          '[]',
        ]);
        // Visible inside the transaction…
        expect(await query(tx, 'select 1 from thing where id = ?', [id])).toHaveLength(1);
        // …and not outside it until it commits.
        expect(await query(db.em(), 'select 1 from thing where id = ?', [id])).toHaveLength(0);
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    expect(await query(db.em(), 'select 1 from thing where id = ?', [id])).toHaveLength(0);
  });
});

describe('stageline_db_statements_total', () => {
  const count = async () =>
    (await metrics.dbStatements.get()).values.find((v) => v.labels.schema === schema)?.value ?? 0;

  it('counts each statement sent, through query() and through the ORM', async () => {
    const before = await count();
    await query(db.em(), 'select 1');
    await db.em().execute('select 2');
    await db.em().count(Thing, {});
    expect((await count()) - before).toBe(3);
  });
});
