import { randomBytes } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { resolvePostgres } from './postgres.ts';

/** `t_` + 12 lowercase hex digits: a valid NATS subject token, stream-name part and SQL identifier. */
function uniqueName(prefix: string): string {
  return `${prefix}${randomBytes(6).toString('hex')}`;
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** `url` with its database (the path) replaced. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}

export interface FreshDatabase {
  /** Connection URL of the new database (same server, user and options as the server URL). */
  readonly url: string;
  readonly name: string;
  /** Drops the database, ending any connections still open to it. Idempotent. */
  drop(): Promise<void>;
}

export interface FreshOptions {
  /** Server to create it on; default the URL of resolvePostgres(). */
  serverUrl?: string;
}

/**
 * Creates a new, empty, uniquely named database (`stageline_t_<12 hex>`) on the resolved PostgreSQL
 * server. Each service under test then migrates its own schema into it.
 */
export async function freshDatabase(options: FreshOptions = {}): Promise<FreshDatabase> {
  const serverUrl = options.serverUrl ?? (await resolvePostgres()).url;
  const name = uniqueName('stageline_t_');
  await withClient(serverUrl, (client) => client.query(`CREATE DATABASE ${quoteIdent(name)}`));
  let dropped: Promise<void> | undefined;
  return {
    url: withDatabase(serverUrl, name),
    name,
    drop: () => {
      // WITH (FORCE) (PostgreSQL 13+): a pool a test forgot to close must not keep the database alive.
      dropped ??= withClient(serverUrl, async (client) => {
        await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
      });
      return dropped;
    },
  };
}

export interface FreshSchema {
  /** The server URL with `options=-c search_path=<schema>`: unqualified names land in the schema. */
  readonly url: string;
  readonly schema: string;
  /** Drops the schema and everything in it. Idempotent. */
  drop(): Promise<void>;
}

/**
 * Creates a uniquely named schema (`t_<12 hex>`) in the server URL's database: cheaper than a
 * database when a test needs only tables of its own.
 */
export async function freshSchema(options: FreshOptions = {}): Promise<FreshSchema> {
  const serverUrl = options.serverUrl ?? (await resolvePostgres()).url;
  const schema = uniqueName('t_');
  await withClient(serverUrl, (client) => client.query(`CREATE SCHEMA ${quoteIdent(schema)}`));
  const url = new URL(serverUrl);
  url.searchParams.set('options', `-c search_path=${schema}`);
  let dropped: Promise<void> | undefined;
  return {
    url: url.toString(),
    schema,
    drop: () => {
      dropped ??= withClient(serverUrl, async (client) => {
        await client.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
      });
      return dropped;
    },
  };
}

/** A NATS bus prefix of one's own for STAGELINE_BUS_PREFIX: `t_<12 hex>`, a lowercase subject token. */
export function freshBusPrefix(): string {
  return uniqueName('t_');
}

/** Whether `stream` belongs to `prefix`: `<PREFIX>_…`, also as a KV (`KV_`) or object store (`OBJ_`) bucket. */
export function streamHasPrefix(stream: string, prefix: string): boolean {
  const upper = stream.toUpperCase();
  const wanted = `${prefix.toUpperCase()}_`;
  return upper.startsWith(wanted) || upper.startsWith(`KV_${wanted}`) || upper.startsWith(`OBJ_${wanted}`);
}

/**
 * Deletes every JetStream stream of a bus prefix (names starting with the uppercased prefix + '_',
 * their consumers with them) and returns the names deleted. Streams of other prefixes are untouched.
 */
export async function dropBusPrefix(natsUrl: string, prefix: string): Promise<string[]> {
  if (!/^[a-z0-9_-]+$/i.test(prefix)) throw new Error(`not a bus prefix: ${JSON.stringify(prefix)}`);
  const nc = await connect({ servers: natsUrl });
  try {
    const jsm = await jetstreamManager(nc);
    const doomed: string[] = [];
    for await (const name of jsm.streams.names()) {
      if (streamHasPrefix(name, prefix)) doomed.push(name);
    }
    for (const name of doomed) await jsm.streams.delete(name);
    return doomed;
  } finally {
    await nc.close();
  }
}
