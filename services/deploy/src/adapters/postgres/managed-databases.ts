// MANAGED databases: a role and a database on a configured PostgreSQL server, the way a cloud-managed
// database is provisioned. Names and passwords are never interpolated unquoted.
import { DomainError } from '@stageline/errors';
import pg from 'pg';
import type { ManagedDatabases } from '../../app/ports.ts';
import type { DatabaseCredentials } from '../../domain/workload.ts';

export interface PgManagedDatabasesOptions {
  /** An administrator connection (CREATEROLE, CREATEDB), e.g. postgres://postgres@127.0.0.1:5433/postgres. */
  adminUrl: string;
  /**
   * Where workloads of each runtime reach the server: `local` (host.containers.internal, podman's
   * gateway), `kubernetes` (an in-cluster Service's DNS name) — a runtime without one has none.
   */
  endpoints: Readonly<Record<string, { host: string; port: number }>>;
}

const ident = (name: string): string => pg.escapeIdentifier(name);
const literal = (value: string): string => pg.escapeLiteral(value);

/** Errors of an unreachable server are worth a redelivery; a refused statement is not. */
function classify(e: unknown): never {
  const code = (e as { code?: string }).code;
  if (code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'ETIMEDOUT' || code === '57P03') {
    throw new DomainError('UNAVAILABLE', 'the managed PostgreSQL server is unavailable', { cause: e, retryable: true });
  }
  throw e;
}

export class PgManagedDatabases implements ManagedDatabases {
  readonly #endpoints: PgManagedDatabasesOptions['endpoints'];
  readonly #adminUrl: string;

  constructor(options: PgManagedDatabasesOptions) {
    this.#adminUrl = options.adminUrl;
    this.#endpoints = options.endpoints;
  }

  endpoint(runtime: string): { host: string; port: number } | undefined {
    return Object.hasOwn(this.#endpoints, runtime) ? this.#endpoints[runtime] : undefined;
  }

  async #withAdmin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
    const client = new pg.Client({ connectionString: this.#adminUrl, connectionTimeoutMillis: 5_000 });
    try {
      await client.connect();
      return await work(client);
    } catch (e) {
      return classify(e);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async ensure(c: DatabaseCredentials): Promise<void> {
    await this.#withAdmin(async (client) => {
      const role = await client.query('select 1 from pg_roles where rolname = $1', [c.username]);
      // The password is set on every deploy: the credential store is the source of truth.
      const verb = role.rowCount === 0 ? 'create' : 'alter';
      await client.query(`${verb} role ${ident(c.username)} with login password ${literal(c.password)}`);
      const db = await client.query('select 1 from pg_database where datname = $1', [c.database]);
      if (db.rowCount === 0) {
        try {
          // CREATE DATABASE cannot run in a transaction, and two deliveries may race to it.
          await client.query(`create database ${ident(c.database)} owner ${ident(c.username)}`);
        } catch (e) {
          if ((e as { code?: string }).code !== '42P04') throw e;
        }
      }
      // Only its owner (and the administrator) may connect.
      await client.query(`revoke connect on database ${ident(c.database)} from public`);
    });
  }

  async drop(c: Pick<DatabaseCredentials, 'username' | 'database'>): Promise<void> {
    await this.#withAdmin(async (client) => {
      // WITH (FORCE) (PostgreSQL 13+) closes the workloads' connections first.
      await client.query(`drop database if exists ${ident(c.database)} with (force)`);
      await client.query(`drop role if exists ${ident(c.username)}`);
    });
  }
}
