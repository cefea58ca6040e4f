import { randomBytes } from 'node:crypto';
import { createLogger, type Logger } from '@stageline/log';
import pg from 'pg';
import { defineEntity, p } from '../src/index.ts';

/** The test server: an explicit DATABASE_URL first, else the standard local port (as the test kit does). */
export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export const silentLog: Logger = createLogger({ service: 'db-test', level: 'silent' });

export function randomName(prefix: string): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

export function urlFor(database: string): string {
  const u = new URL(DATABASE_URL);
  u.pathname = `/${database}`;
  return u.toString();
}

/** Runs `fn` with a plain client on the test database (or another one), outside MikroORM. */
export async function withClient<T>(fn: (c: pg.Client) => Promise<T>, url = DATABASE_URL): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export async function dropSchema(schema: string): Promise<void> {
  await withClient((c) => c.query(`drop schema if exists "${schema}" cascade`));
}

const ThingSchema = defineEntity({
  name: 'Thing',
  tableName: 'thing',
  properties: {
    id: p.uuid().primary(),
    name: p.string().unique('thing_name_key'),
    count: p.integer(),
    tags: p.json<string[]>(),
    createdAt: p.datetime(),
    note: p.text().nullable(),
  },
});
/** A test entity in the `defineEntity` + class style services use. */
export class Thing extends ThingSchema.class {
  label(): string {
    return `${this.name}#${this.count}`;
  }
}
ThingSchema.setClass(Thing);

export const thingMigration = {
  name: '0001-thing',
  async up(sql: { execute(s: string): Promise<unknown> }) {
    await sql.execute(`create table thing (
      id uuid primary key,
      name text not null constraint thing_name_key unique,
      count integer not null,
      tags jsonb not null,
      created_at timestamptz not null,
      note text null
    )`);
  },
};
