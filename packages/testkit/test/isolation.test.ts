import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import fc from 'fast-check';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import {
  dropBusPrefix,
  freshBusPrefix,
  freshDatabase,
  freshSchema,
  resolveNats,
  streamHasPrefix,
} from '../src/index.ts';

async function query<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

describe('freshDatabase', () => {
  it('creates a database of its own that drop() removes', async () => {
    const database = await freshDatabase();
    expect(database.name).toMatch(/^stageline_t_[0-9a-f]{12}$/);
    expect(new URL(database.url).pathname).toBe(`/${database.name}`);
    await query(database.url, 'CREATE TABLE things (id int primary key)');
    await query(database.url, 'INSERT INTO things VALUES (1)');
    const [row] = await query<{ db: string; n: number }>(
      database.url,
      'SELECT current_database() AS db, count(*)::int AS n FROM things',
    );
    expect(row).toEqual({ db: database.name, n: 1 });

    // An open connection must not keep it alive.
    const lingering = new pg.Client({ connectionString: database.url });
    await lingering.connect();
    lingering.on('error', () => {});
    await database.drop();
    await database.drop();
    await lingering.end().catch(() => undefined);
    await expect(query(database.url, 'SELECT 1')).rejects.toThrow(/does not exist/);
  });

  it('gives every call a different database', async () => {
    const [a, b] = await Promise.all([freshDatabase(), freshDatabase()]);
    expect(a?.name).not.toBe(b?.name);
    await Promise.all([a?.drop(), b?.drop()]);
  });
});

describe('freshSchema', () => {
  it('puts unqualified tables in its own schema, and drop() removes it', async () => {
    const schema = await freshSchema();
    expect(schema.schema).toMatch(/^t_[0-9a-f]{12}$/);
    await query(schema.url, 'CREATE TABLE things (id int)');
    const tables = await query<{ table_schema: string }>(
      schema.url,
      "SELECT table_schema FROM information_schema.tables WHERE table_name = 'things'",
    );
    expect(tables.map((t) => t.table_schema)).toContain(schema.schema);
    await schema.drop();
    const left = await query(schema.url, `SELECT 1 FROM pg_namespace WHERE nspname = '${schema.schema}'`);
    expect(left).toEqual([]);
  });
});

describe('freshBusPrefix', () => {
  it('is a unique lowercase NATS token', () => {
    const prefixes = Array.from({ length: 1000 }, () => freshBusPrefix());
    expect(new Set(prefixes).size).toBe(prefixes.length);
    for (const prefix of prefixes) expect(prefix).toMatch(/^t_[0-9a-f]{12}$/);
  });

  it('matches only streams of its own prefix', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[A-Z0-9_]{1,20}$/), (suffix) => {
        const mine = freshBusPrefix();
        const other = freshBusPrefix();
        expect(streamHasPrefix(`${mine.toUpperCase()}_${suffix}`, mine)).toBe(true);
        expect(streamHasPrefix(`KV_${mine}_${suffix.toLowerCase()}`, mine)).toBe(true);
        expect(streamHasPrefix(`${other.toUpperCase()}_${suffix}`, mine)).toBe(false);
        expect(streamHasPrefix(`STAGELINE_${suffix}`, mine)).toBe(false);
        // No prefix is the start of another's name without the separator.
        expect(streamHasPrefix(`${mine.toUpperCase()}X_${suffix}`, mine)).toBe(false);
      }),
    );
  });
});

describe('dropBusPrefix', () => {
  it('deletes the streams of one prefix and no others', async () => {
    const { url } = await resolveNats();
    const mine = freshBusPrefix();
    const other = freshBusPrefix();
    const nc = await connect({ servers: url });
    const jsm = await jetstreamManager(nc);
    try {
      for (const prefix of [mine, other]) {
        for (const name of ['REQUESTS', 'EVENTS']) {
          await jsm.streams.add({
            name: `${prefix.toUpperCase()}_${name}`,
            subjects: [`${prefix}.${name.toLowerCase()}.>`],
          });
        }
      }
      const deleted = await dropBusPrefix(url, mine);
      expect(deleted.sort()).toEqual([`${mine.toUpperCase()}_EVENTS`, `${mine.toUpperCase()}_REQUESTS`]);
      const remaining: string[] = [];
      for await (const name of jsm.streams.names()) remaining.push(name);
      expect(remaining.filter((n) => n.startsWith(mine.toUpperCase()))).toEqual([]);
      expect(remaining.filter((n) => n.startsWith(other.toUpperCase())).sort()).toEqual([
        `${other.toUpperCase()}_EVENTS`,
        `${other.toUpperCase()}_REQUESTS`,
      ]);
    } finally {
      await dropBusPrefix(url, other);
      await nc.close();
    }
  });

  it('refuses something that is not a prefix', async () => {
    const { url } = await resolveNats();
    await expect(dropBusPrefix(url, '')).rejects.toThrow(/not a bus prefix/);
    await expect(dropBusPrefix(url, 'a.>')).rejects.toThrow(/not a bus prefix/);
  });
});
