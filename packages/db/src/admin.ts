import pg from 'pg';

/** SQLSTATEs met while creating a database or schema that another process is creating too. */
const INVALID_CATALOG_NAME = '3D000';
const DUPLICATE_DATABASE = '42P04';
const DUPLICATE_SCHEMA = '42P06';
const UNIQUE_VIOLATION = '23505';

/** Advisory lock namespaces (first key of the two-key form): one per purpose, so locks never collide. */
export const LOCK_MIGRATE = 0x53_4c_01; // "SL" 1
export const LOCK_OUTBOX = 0x53_4c_02; // "SL" 2

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Schema names are spliced into DDL and the connection's search_path: keep them to plain identifiers. */
export function assertSchemaName(schema: string): void {
  if (!SCHEMA_NAME.test(schema)) {
    throw new Error(`invalid schema name "${schema}": use lowercase letters, digits and _ (at most 63)`);
  }
}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** A stable signed 32-bit hash (FNV-1a) of a string: the second key of an advisory lock. */
export function lockKey(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h | 0;
}

export function databaseName(url: string): string {
  const name = decodeURIComponent(new URL(url).pathname.replace(/^\//, ''));
  if (!name) {
    throw new Error('the database URL names no database');
  }
  return name;
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

function pgCode(e: unknown): unknown {
  return typeof e === 'object' && e !== null ? (e as { code?: unknown }).code : undefined;
}

/** A client on the given URL, connected. The caller ends it. */
export async function connectClient(url: string, applicationName: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: applicationName });
  // A dropped connection emits 'error'; without a listener that would crash the process.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (e) {
    await client.end().catch(() => {});
    throw e;
  }
  return client;
}

/**
 * Connects to the database named in `url`, creating it first if it does not exist (through the `postgres`
 * maintenance database). Another process creating it at the same moment is fine.
 */
export async function connectCreatingDatabase(url: string, applicationName: string): Promise<pg.Client> {
  try {
    return await connectClient(url, applicationName);
  } catch (e) {
    if (pgCode(e) !== INVALID_CATALOG_NAME) {
      throw e;
    }
  }
  const admin = await connectClient(withDatabase(url, 'postgres'), applicationName);
  try {
    await admin.query(`create database ${quoteIdent(databaseName(url))}`);
  } catch (e) {
    // Two creators: the loser gets duplicate_database, or a unique violation on pg_database's index.
    if (pgCode(e) !== DUPLICATE_DATABASE && pgCode(e) !== UNIQUE_VIOLATION) {
      throw e;
    }
  } finally {
    await admin.end().catch(() => {});
  }
  return connectClient(url, applicationName);
}

/** `create schema if not exists` still races on the catalog's unique index; treat that as success. */
export async function ensureSchema(client: pg.Client, schema: string): Promise<void> {
  try {
    await client.query(`create schema if not exists ${quoteIdent(schema)}`);
  } catch (e) {
    if (pgCode(e) !== DUPLICATE_SCHEMA && pgCode(e) !== UNIQUE_VIOLATION) {
      throw e;
    }
  }
}
